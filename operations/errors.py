"""Domain errors. Each carries the HTTP status and the exact message of SPEC §5."""


class OperationError(Exception):
    status_code = 400
    default_message = "Bad request"

    def __init__(self, message: str | None = None, *, hint: str = ""):
        self.message = message or self.default_message
        self.hint = hint  # a way forward, given beside the message when there is one
        super().__init__(self.message)


class BadInput(OperationError):
    status_code = 400


class Forbidden(OperationError):
    """The caller may see the operation but not act on it."""

    status_code = 403
    default_message = "You may see this operation but not act on it"


class NotFound(OperationError):
    status_code = 404
    default_message = "Operation ID Invalid"


class Conflict(OperationError):
    """The operation's state does not allow the request."""

    status_code = 409


class TooLarge(OperationError):
    status_code = 413


class QuotaExceeded(OperationError):
    """The caller has too many of something: wait (`retry_after` seconds, when waiting frees
    any), or clean up first."""

    status_code = 429

    def __init__(self, message: str | None = None, *, hint: str = "", retry_after: int | None = None):
        super().__init__(message, hint=hint)
        self.retry_after = retry_after


class LeaseLost(Exception):
    """The worker no longer holds the operation (its lease expired and another took it, or the
    state moved on). The worker must stop without committing anything more."""
