"""Reading request parameters. Every malformed value becomes a 400 with a message that says
which parameter and what is expected."""

from collections.abc import Mapping

from django.http import QueryDict
from rest_framework import parsers
from rest_framework.exceptions import ParseError

from operations.errors import BadInput
from operations.params import positive_id
from operations.uploads import abort_unfinished_uploads, check_upload_size


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, with a 400 (not a 500) for JSON nested too deeply to decode."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply") from None


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
