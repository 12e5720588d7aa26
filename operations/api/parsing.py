"""Reading request parameters. Every malformed value becomes a 400 with a message that says
which parameter and what is expected."""

import re
from collections.abc import Mapping

from rest_framework import parsers
from rest_framework.exceptions import ParseError

from operations.errors import BadInput, TooLarge
from operations.uploads import upload_too_large

MAX_ID = 2**63 - 1
TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off", ""}


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
    data = request.data
    if upload_too_large(request._request):
        # Checked first: a body refused unread has no other fields either.
        raise TooLarge("The file is larger than the configured upload limit")
    if not isinstance(data, Mapping):
        raise BadInput("The request body must be a JSON object or a form")
    if request.query_params:
        return {**request.query_params.dict(), **data}
    return data


def op_id(data: Mapping) -> int:
    value = data.get("op_id")
    if value is None or value == "":
        raise BadInput("op_id is required")
    number = integer(value, message="op_id must be a positive integer")
    if not 0 < number <= MAX_ID:
        raise BadInput("op_id must be a positive integer")
    return number


def integer(value, *, message: str) -> int:
    """A JSON integer, or a string of ASCII digits; anything else is a 400 with `message`.
    (int() would also take 1.9, true, "1_0" and other scripts' digits.)"""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?[0-9]{1,19}\s*", value):
        return int(value)
    raise BadInput(message)


def flag(data: Mapping, name: str, *, default: bool = False) -> bool:
    value = data.get(name)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise BadInput(f"{name} must be true or false")


def seconds(data: Mapping, name: str) -> float:
    value = data.get(name)
    if value is None or value == "":
        return 0.0
    if isinstance(value, bool):
        return float(MAX_ID) if value else 0.0  # "wait": true waits as long as allowed
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BadInput(f"{name} must be a number of seconds") from None
    if not 0 <= number < float("inf"):
        raise BadInput(f"{name} must be a number of seconds")
    return number


def text(data: Mapping, name: str, *, default: str) -> str:
    value = data.get(name)
    if value is None or value == "":
        return default
    if not isinstance(value, str):
        raise BadInput(f"{name} must be a string")
    return value.strip()
