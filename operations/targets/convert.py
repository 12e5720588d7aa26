"""CSV text to a target's typed columns, on the hot path (SPEC §13).

For each imported field one function, made once an import, turns the cell's text into what the
database driver takes: on PostgreSQL the value as COPY's text format spells it, elsewhere the
Python value that Django itself would hand the driver. It accepts what the model field's own
`to_python` and validators accept (tests/api/test_targets.py checks that against `full_clean`),
but without building a model instance or a form a row: django-import-export's widgets, made
into one call per cell. A row's code (targets/rows.py) spells out what each does with a common
cell (`CommonCell`) and calls it for the others.

An empty cell (only spaces, for non-text fields) is NULL where the field is nullable, "" for a
text field that may be blank, the field's default if it has one; a required field, or one with
none of these, makes it a row error.
"""

import csv
import datetime
import decimal
import io
import json
import math
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from django.core import validators as django_validators
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db import connection, models
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from operations.targets.emails import quick_check

_iso_date = datetime.date.fromisoformat

RAW_TEXT_LIMIT = 500
VALUE_IN_REASON = 60
PG_NULL = "\\N"
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
TRUE_WORDS = frozenset({"1", "t", "true", "y", "yes", "on"})
FALSE_WORDS = frozenset({"0", "f", "false", "n", "no", "off"})


class Invalid(ValueError):
    """A cell that does not convert; its text says why, after the value ("is not an integer")."""


def copy_text(value: str) -> str:
    """`value` as a field of COPY's text format."""
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return value.translate(_COPY_ESCAPES)
    return value


# --- parsing, per type: text -> the Python value `to_python` would give ---------------------


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # JSON, CSV readers and most databases' clients have no NaN
        raise Invalid("is not a finite number")
    return value


def _decimal(text: str) -> decimal.Decimal:
    try:
        value = decimal.Decimal(text)
    except decimal.InvalidOperation:
        raise Invalid("is not a decimal number") from None
    if not value.is_finite():
        raise Invalid("is not a decimal number")
    return value


def _boolean(text: str) -> bool:
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise Invalid("is not a boolean (true/false, yes/no, 1/0)")


def _date(text: str) -> datetime.date:
    try:
        # What parse_date tries first; a cell it takes has no spaces around it to strip.
        return _iso_date(text)
    except ValueError:
        pass
    value = parse_date(text.strip())
    if value is None:
        raise Invalid("is not a date (YYYY-MM-DD)")
    return value


def _datetime(text: str) -> datetime.datetime:
    text = text.strip()
    value = parse_datetime(text)
    if value is None:
        day = parse_date(text)
        if day is None:
            raise Invalid("is not a date and time (YYYY-MM-DD HH:MM[:SS][+HH:MM])")
        value = datetime.datetime(day.year, day.month, day.day)
    if timezone.is_naive(value):
        value = timezone.make_aware(value, timezone.get_default_timezone())
    return value


def _uuid(text: str) -> uuid.UUID:
    return uuid.UUID(text.strip())


# (parser, the reason when it raises a plain ValueError) by the field's internal type.
_PARSERS: dict[str, tuple[Callable[[str], object], str]] = {
    **dict.fromkeys(
        [
            "IntegerField",
            "BigIntegerField",
            "SmallIntegerField",
            "PositiveIntegerField",
            "PositiveBigIntegerField",
            "PositiveSmallIntegerField",
        ],
        (int, "is not an integer"),
    ),
    "FloatField": (_float, "is not a number"),
    "DecimalField": (_decimal, "is not a decimal number"),
    "BooleanField": (_boolean, "is not a boolean"),
    "DateField": (_date, "is not a date (YYYY-MM-DD)"),
    "DateTimeField": (_datetime, "is not a date and time"),
    "UUIDField": (_uuid, "is not a UUID"),
}
_TEXT_TYPES = frozenset({"CharField", "TextField", "EmailField", "SlugField", "URLField"})


# --- what the driver takes, per type -------------------------------------------------------


def _postgresql_out(kind: str, field: models.Field) -> Callable[[object], str]:
    if kind in _TEXT_TYPES:
        return copy_text
    if kind == "BooleanField":
        return lambda value: "t" if value else "f"
    if kind == "DateField":
        return datetime.date.isoformat
    if kind == "DateTimeField":
        return datetime.datetime.isoformat
    if kind == "FloatField":
        return repr
    return str  # integers, decimals, UUIDs


def _other_out(kind: str, field: models.Field) -> Callable[[object], object] | None:
    """None: the parsed value itself. Elsewhere what Django would save (its own adaptation)."""
    if kind == "DateField":
        return datetime.date.isoformat
    if kind in ("DecimalField", "DateTimeField", "UUIDField"):
        return lambda value: field.get_db_prep_save(value, connection)
    return None


# --- one cell -----------------------------------------------------------------------------------


def _checks(field: models.Field, kind: str) -> tuple[int | None, int | None, int | None, list]:
    """Bounds taken out of the field's validators (checked inline): the most characters, the
    least and the most value; and the validators left to call."""
    max_length = low = high = None
    others = []
    for validator in field.validators:
        if isinstance(validator, django_validators.MaxLengthValidator) and kind in _TEXT_TYPES:
            max_length = validator.limit_value
        elif isinstance(validator, django_validators.MinValueValidator) and not callable(validator.limit_value):
            low = validator.limit_value if low is None else max(low, validator.limit_value)
        elif isinstance(validator, django_validators.MaxValueValidator) and not callable(validator.limit_value):
            high = validator.limit_value if high is None else min(high, validator.limit_value)
        else:
            others.append(validator)
    return max_length, low, high, others


def cell_converter(field: models.Field, *, required: bool) -> Callable[[str], object]:
    """The function text -> what the driver takes for `field`, raising Invalid (or another
    ValueError) for a value the field refuses."""
    kind = field.get_internal_type()
    if kind not in _PARSERS and kind not in _TEXT_TYPES:
        raise ImproperlyConfigured(f"{field.model._meta.label}.{field.name}: a {kind} cannot be imported")
    postgresql = connection.vendor == "postgresql"
    out = (_postgresql_out(kind, field) if postgresql else _other_out(kind, field)) or _same
    max_length, low, high, others = _checks(field, kind)
    checks = [_refusing_as_invalid(quick_check(validator)) for validator in others]
    if field.choices:
        checks.append(_one_of(frozenset(value for value, _ in field.flatchoices)))
    empty = _empty_value(field, required=required, text=kind in _TEXT_TYPES, out=out, postgresql=postgresql)
    if kind in _TEXT_TYPES:
        convert = _text_converter(empty, max_length, checks, out)
        # A text's `out` is copy_text on PostgreSQL, else the text itself (see _other_out).
        common = CommonCell(text=True, copy_text=out is copy_text, max_length=max_length, checks=tuple(checks))
    else:
        convert = _parsed_converter(empty, _PARSERS[kind][0], low, high, checks, out)
        # A date in ISO form, the common one, takes the quicker of the converter's two parsers.
        parse = _iso_date if kind == "DateField" else _PARSERS[kind][0]
        common = CommonCell(parse=parse, low=low, high=high, checks=tuple(checks), out=None if out is _same else out)
    convert.type_reason = _PARSERS[kind][1] if kind in _PARSERS else "is not valid"
    convert.common = common
    return convert


def _refusing_as_invalid(check: Callable[[str], None]) -> Callable[[str], None]:
    """`check`, raising Invalid with the same reason where it raises Django's ValidationError.

    A ValidationError refers to itself (its `error_list`), so one that is caught and dropped
    waits for a full garbage collection, and with it the frames of its traceback and of the
    exception it was raised while handling: the row code's and the CSV reader's, which hold a
    whole block's lines and rows. In a file with a bad address every few hundred rows the worker
    held several chunks at a time that way."""

    def checked(value: str) -> None:
        try:
            check(value)
        except ValidationError as exc:
            exc.__traceback__ = exc.__context__ = None  # the frames, and an exception being handled
            raise Invalid("is not valid: " + " ".join(exc.messages)) from None

    # The row code spells out the common case of a check that has one (targets/rows.py).
    checked.passes_at_once = getattr(check, "passes_at_once", None)
    return checked


@dataclass(frozen=True)
class CommonCell:
    """What a converter does with a common cell, for the row code (targets/rows.py) to spell
    out. Text: a cell not empty, not over `max_length`, without a character that needs care
    (`copy_text`: COPY's escapes or a NUL; else a NUL) is itself once `checks` pass. Parsed: a
    cell not empty is `out(parse(text))` (`out` None: the value itself) once in range and
    `checks` pass, or `parse` raises and the converter decides. Other cells: the converter."""

    text: bool = False
    copy_text: bool = False
    max_length: int | None = None
    parse: Callable[[str], object] | None = None
    low: object = None
    high: object = None
    checks: tuple = ()
    out: Callable[[object], object] | None = None


def _same(value):
    return value


def _text_converter(empty, max_length, checks, out) -> Callable[[str], object]:
    most = math.inf if max_length is None else max_length
    if out is copy_text:
        return _copy_text_converter(empty, max_length, most, checks)
    if not checks and out is _same:

        def convert_plain(text: str):
            if not text:
                return empty()
            if len(text) > most:
                raise Invalid(f"is longer than {max_length} characters")
            if "\x00" in text:
                raise Invalid("contains a NUL character")
            return text

        return convert_plain

    def convert(text: str):
        if not text:
            return empty()
        if len(text) > most:
            raise Invalid(f"is longer than {max_length} characters")
        if "\x00" in text:
            raise Invalid("contains a NUL character")
        for check in checks:
            check(text)
        return out(text)

    return convert


def _copy_text_converter(empty, max_length, most, checks) -> Callable[[str], object]:
    """A text cell as COPY's text: most cells hold neither a character that COPY escapes nor a
    NUL, which a look for a backslash and `isprintable` (false for tabs, line breaks and NUL)
    tell at once, where a look for each of them would cost a scan of the text each."""

    def convert_copy_text(text: str):
        if not text:
            return empty()
        if len(text) > most:
            raise Invalid(f"is longer than {max_length} characters")
        if "\\" in text or not text.isprintable():
            return _unusual_copy_text(text, checks)
        for check in checks:
            check(text)
        return text

    return convert_copy_text


def _unusual_copy_text(text: str, checks) -> str:
    """A text cell that may hold a NUL or a character that COPY escapes, as COPY's text."""
    if "\x00" in text:
        raise Invalid("contains a NUL character")
    for check in checks:
        check(text)
    return text.translate(_COPY_ESCAPES)


def _parsed_converter(empty, parse, low, high, checks, out) -> Callable[[str], object]:
    if low is not None or high is not None:
        return _ranged_converter(empty, parse, low, high, checks, out)
    if not checks:

        def convert_unchecked(text: str):
            if not text or text.isspace():
                return empty()
            return out(parse(text))

        return convert_unchecked

    def convert(text: str):
        if not text or text.isspace():
            return empty()
        value = parse(text)
        for check in checks:
            check(value)
        return out(value)

    return convert


def _ranged_converter(empty, parse, low, high, checks, out) -> Callable[[str], object]:
    least = -math.inf if low is None else low
    most = math.inf if high is None else high
    if not checks and out is _same:

        def convert_plain_in_range(text: str):
            if not text or text.isspace():
                return empty()
            value = parse(text)
            if value < least or value > most:
                raise Invalid(f"is out of range ({low} to {high})")
            return value

        return convert_plain_in_range

    def convert_in_range(text: str):
        if not text or text.isspace():
            return empty()
        value = parse(text)
        if value < least or value > most:
            raise Invalid(f"is out of range ({low} to {high})")
        for check in checks:
            check(value)
        return out(value)

    return convert_in_range


def _one_of(choices: frozenset) -> Callable[[object], None]:
    def check(value) -> None:
        if value not in choices:
            raise Invalid(f"is not one of: {', '.join(map(str, sorted(choices, key=str)))}")

    return check


def _empty_value(field, *, required: bool, text: bool, out, postgresql: bool) -> Callable[[], object]:
    if required:
        return _raise_required
    if field.null:
        return (lambda: PG_NULL) if postgresql else (lambda: None)
    if text and field.blank:
        return lambda: ""
    if field.has_default():
        default = field.get_default()
        return lambda: out(default)
    return _raise_required


def _raise_required():
    raise Invalid("is required")


def explain(convert: Callable[[str], object], text: str) -> str:
    """Why `convert` refuses `text` ("" if it does not)."""
    try:
        convert(text)
    except Invalid as exc:
        return str(exc)
    except (ValueError, TypeError, ArithmeticError):
        return convert.type_reason
    return ""


def quoted(text: str) -> str:
    """A cell's value in a reason: JSON-quoted, cut at VALUE_IN_REASON characters."""
    cut = text if len(text) <= VALUE_IN_REASON else text[:VALUE_IN_REASON] + "…"
    return json.dumps(cut, ensure_ascii=False)


def raw_line(fields: Sequence[str]) -> str:
    """The row as a CSV line again, cut at RAW_TEXT_LIMIT: the row error's copy of its text."""
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(fields)
    return out.getvalue()[:RAW_TEXT_LIMIT]
