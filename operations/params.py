"""Reading parameter values from a mapping (a request body, a form, options). Every malformed
value is a BadInput (400) whose message says which parameter and what is expected, and every
number is bounded, so that no value a client sends can raise anything else."""

import math
import re
from collections.abc import Mapping

from operations.errors import BadInput

MAX_ID = 2**63 - 1
TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off", ""}


def integer(value, *, message: str) -> int:
    """A JSON integer, or a string of ASCII digits; anything else is a 400 with `message`.
    (int() would also take 1.9, true, "1_0" and other scripts' digits.)"""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?[0-9]{1,19}\s*", value):
        return int(value)
    raise BadInput(message)


def bounded_integer(value, *, minimum: int, maximum: int = MAX_ID, message: str) -> int:
    """`integer`, refused with `message` outside minimum..maximum."""
    number = integer(value, message=message)
    if not minimum <= number <= maximum:
        raise BadInput(message)
    return number


def positive_id(data: Mapping, name: str) -> int:
    """A required database id (1 to 2**63-1)."""
    value = data.get(name)
    if value is None or value == "":
        raise BadInput(f"{name} is required")
    return bounded_integer(value, minimum=1, message=f"{name} must be a positive integer")


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
    """A non-negative number of seconds; `true` means as long as allowed (callers bound it)."""
    value = data.get(name)
    if value is None or value == "":
        return 0.0
    if isinstance(value, bool):
        return math.inf if value else 0.0
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise BadInput(f"{name} must be a number of seconds") from None
    if not 0 <= number < math.inf:
        raise BadInput(f"{name} must be a number of seconds")
    return number


def text(data: Mapping, name: str, *, default: str) -> str:
    value = data.get(name)
    if value is None or value == "":
        return default
    if not isinstance(value, str):
        raise BadInput(f"{name} must be a string")
    return value.strip()
