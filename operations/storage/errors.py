"""The file store's errors."""

from operations.errors import OperationError


class StorageUnavailable(OperationError):
    """The file store did not answer, or not for long enough: after the retries in a worker,
    which fails the operation with it like with any error it cannot get past (resume it once the
    store is back); at once in a web request, which answers 503."""

    status_code = 503
    # What users and the operation's `error` see; the details (what failed, on which endpoint,
    # bucket and key) are in the log.
    default_message = "The file store is not answering; try again"


class ShortRead(Exception):
    """A response body ended before its Content-Length (the connection was cut): retried."""


class Stopped(Exception):
    """A read ahead given up while it waited to try again: its reader was closed."""
