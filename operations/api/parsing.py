"""Reading request parameters. Every malformed value becomes a 400 with a message that says
which parameter and what is expected."""

import contextlib
import json
import math
from collections.abc import Mapping

from django.conf import settings
from django.http import QueryDict
from rest_framework import parsers
from rest_framework.exceptions import ParseError

from operations import services
from operations.errors import BadInput, OperationError, TooLarge
from operations.params import positive_id
from operations.state_machine import Actor
from operations.uploads import abort_unfinished_uploads, check_upload_size, upload_refusal

# No parameter takes a longer integer (ids have 19 digits). int() of a 5,000-digit string raises,
# and float() of a 400-digit integer overflows: a longer one is read as an infinity, which every
# parameter refuses with its own message.
JSON_INTEGER_DIGITS = 30


def _json_integer(text: str) -> int | float:
    if len(text) > JSON_INTEGER_DIGITS:
        return -math.inf if text.startswith("-") else math.inf
    return int(text)


def _json_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser with bounds: a body of at most DATA_UPLOAD_MAX_MEMORY_SIZE bytes (413
    above: a JSON body is read whole), no integer longer than 30 digits, and a 400 (not a 500)
    for JSON nested too deeply to decode."""

    def parse(self, stream, media_type=None, parser_context=None):
        parser_context = parser_context or {}
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raw = b"" if stream is None else stream.read(-1 if limit is None else limit + 1)
        if limit is not None and len(raw) > limit:
            raise TooLarge(f"A JSON body must be at most {limit} bytes")
        try:
            text = raw.decode(parser_context.get("encoding", settings.DEFAULT_CHARSET))
            return json.loads(text, parse_int=_json_integer, parse_constant=_json_constant)
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply") from None
        except ValueError as exc:  # UnicodeDecodeError too
            raise ParseError(f"JSON parse error - {exc}") from None


def body(request) -> Mapping:
    """The request's parameters: the body (JSON, form or multipart) and the query string; the
    body wins where both name a parameter."""
    try:
        data = request.data
    except BaseException:
        # A body that could not be read or parsed (a 400 from DRF, which Django's
        # got_request_exception never hears of): drop what its upload had stored.
        abort_unfinished_uploads(request._request)
        raise
    # Checked first: a body refused unread has no other fields either.
    check_upload_size(request._request)
    if not isinstance(data, Mapping):
        raise BadInput("The request body must be a JSON object or a form")
    if request.query_params:
        # Value by value: unpacking a QueryDict with ** would copy its lists of values.
        return {**request.query_params.dict(), **(data.dict() if isinstance(data, QueryDict) else data)}
    return data


def op_id(data: Mapping) -> int:
    return positive_id(data, "op_id")


def optional_id(data: Mapping, name: str) -> int | None:
    """An id if `data` has a valid one, else None."""
    try:
        return positive_id(data, name)
    except BadInput:
        return None


def body_of_start(request, *, op_id: int | None) -> Mapping:
    """`body`, for a start that takes a file. An upload refused before its body was read (over
    the size limit or the stored-bytes quota, past the uploads in flight) has no fields, op_id
    included: its refusal goes into the history of the operation named outside the body (the
    path of /api/operations/{id}/start/, the query string of /upload/?op_id=N), as any refused
    input does (`input refused: ...`). The caller hears the refusal, whatever happens to it."""
    try:
        return body(request)
    except OperationError as error:
        if op_id is not None and error is upload_refusal(request._request):
            with contextlib.suppress(OperationError):  # not the caller's operation: not recorded
                services.record_input_refusal(op_id, actor=Actor.for_user(request.user), refusal=error)
        raise
