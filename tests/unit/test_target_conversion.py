"""Each cell converter of an import target against the model field's own verdict (SPEC §13).

Hypothesis makes cells per type, plausible ones and arbitrary text, and the converter must
accept exactly what `field.clean()` (to_python, validate, the validators: what `full_clean`
runs per field) accepts, on the cell as Django would get it, and give the value Django would
save. The few places where an import differs on purpose are spelled out in `django_accepts`.
"""

import datetime
import gc
import types
import uuid
import warnings

import pytest
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import connection, models
from django.utils import timezone
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from operations.targets import convert
from operations.targets.rows import RowConverter

FIELDS = {
    "integer": models.IntegerField(null=True),
    "small integer": models.PositiveSmallIntegerField(null=True),
    "decimal": models.DecimalField(max_digits=7, decimal_places=2, null=True),
    "float": models.FloatField(null=True),
    "boolean": models.BooleanField(null=True),
    "date": models.DateField(null=True),
    "datetime": models.DateTimeField(null=True),
    "uuid": models.UUIDField(null=True),
    "email": models.EmailField(null=True),
    "text": models.CharField(max_length=5, blank=True),
    "choices": models.CharField(max_length=5, choices=[("a", "A"), ("bb", "B")], null=True),
    "integer choices": models.IntegerField(choices=[(1, "one"), (20, "twenty")], null=True),
}
STRIPPED = {"boolean", "date", "datetime", "uuid"}  # the import strips these (int() & co. do too)

junk = st.text(max_size=30)
CELLS = {
    "integer": st.one_of(st.integers().map(str), st.text("0123456789-+_ .e", max_size=25), junk),
    "decimal": st.one_of(st.decimals().map(str), st.text("0123456789-+.eE", max_size=12), junk),
    "float": st.one_of(st.floats().map(repr), st.text("0123456789-+.eEnaif", max_size=12), junk),
    "boolean": st.one_of(st.sampled_from(["t", "True", "1", "f", "False", "0", "yes", "No", " true "]), junk),
    "date": st.one_of(st.dates().map(str), st.text("0123456789-W T:", max_size=12), junk),
    "datetime": st.one_of(
        st.datetimes().map(str), st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()), junk
    ),
    "uuid": st.one_of(st.uuids().map(str), st.uuids().map(lambda u: u.hex), st.uuids().map(lambda u: f"{{{u}}}"), junk),
    "email": st.one_of(st.emails(), junk),
    "text": junk,
    "choices": st.one_of(st.sampled_from(["a", "bb", "A", "b"]), junk),
    "integer choices": st.one_of(st.sampled_from(["1", "20", "2", " 20"]), junk),
}
CELLS["small integer"] = CELLS["integer"]


def django_accepts(kind: str, field: models.Field, text: str):
    """(accepted, value) as the model field has it, on the cell as the import reads it."""
    cell = text.strip() if kind in STRIPPED else text
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # naive datetimes: made aware, as Django does
            value = field.clean(cell, None)
    except ValidationError:
        return False, None
    if kind == "float" and value != value or value in (float("inf"), float("-inf")):
        return False, None  # no NaN or infinity: JSON and the CSV readers have none
    if kind == "text" and "\x00" in value:
        return False, None  # PostgreSQL's text has no NUL; refused everywhere alike
    return True, value


def imported(convert_cell, text: str):
    try:
        return True, convert_cell(text)
    except (ValueError, TypeError, ArithmeticError, ValidationError):
        return False, None


@pytest.mark.parametrize("kind", sorted(FIELDS))
def test_a_cell_converts_exactly_when_the_model_field_accepts_it(kind):
    field = FIELDS[kind]
    convert_cell = convert.cell_converter(field, required=False)

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(CELLS[kind])
    @example("")
    def check(text):
        if not text.strip() and kind != "text":
            return  # empty cells: test_an_empty_cell
        accepted, value = django_accepts(kind, field, text)
        if kind == "boolean" and not accepted:
            accepted = text.strip().lower() in convert.TRUE_WORDS | convert.FALSE_WORDS
            value = text.strip().lower() in convert.TRUE_WORDS
        ok, converted = imported(convert_cell, text)
        assert ok == accepted, (text, converted)
        if ok:
            assert converted == as_driver_takes(kind, field, value), text
            assert not accepted or convert.explain(convert_cell, text) == ""
        else:
            assert convert.explain(convert_cell, text)

    check()


def as_driver_takes(kind: str, field: models.Field, value):
    if connection.vendor == "postgresql":
        if kind == "boolean":
            return "t" if value else "f"
        if kind == "datetime" and timezone.is_naive(value):
            value = timezone.make_aware(value, timezone.get_default_timezone())  # as Django saves it
        if kind in ("date", "datetime"):
            return value.isoformat()
        if kind == "float":
            return repr(value)
        return convert.copy_text(value) if isinstance(value, str) else str(value)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return field.get_db_prep_save(value, connection)


@pytest.mark.parametrize(
    "field, required, expected",
    [
        (models.IntegerField(null=True), False, None),
        (models.CharField(max_length=5, blank=True), False, ""),
        (models.CharField(max_length=5, blank=True, null=True), False, None),
        (models.IntegerField(default=7), False, 7),
        (models.CharField(max_length=5), True, convert.Invalid),
        (models.IntegerField(), False, convert.Invalid),
    ],
)
def test_an_empty_cell(field, required, expected):
    convert_cell = convert.cell_converter(field, required=required)
    if expected is convert.Invalid:
        assert convert.explain(convert_cell, "") == "is required"
        return
    got = convert_cell("")
    if connection.vendor == "postgresql":
        assert got == (convert.PG_NULL if expected is None else str(expected))
    else:
        assert got == expected


def test_reasons_name_the_value_and_why():
    assert convert.explain(convert.cell_converter(models.IntegerField(), required=False), "abc") == "is not an integer"
    date = convert.cell_converter(models.DateField(), required=False)
    assert convert.explain(date, "2024-02-30") == "is not a date (YYYY-MM-DD)"
    text = convert.cell_converter(models.CharField(max_length=3), required=False)
    assert convert.explain(text, "abcd") == "is longer than 3 characters"
    assert convert.quoted("x" * 100) == '"' + "x" * 60 + '…"'
    assert datetime and uuid  # the strategies' types


def test_the_quick_email_check_repeats_what_djangos_validator_does():
    """The conversion accepts an address whose two parts match EmailValidator's own patterns
    without calling it (operations/targets/emails.py): that is the same verdict only while the
    validator's check is exactly those two matches. A Django upgrade that changes it fails here
    (docs/performance.md, "Private APIs kept")."""
    import inspect

    from django.core.validators import EmailValidator

    call = inspect.getsource(EmailValidator.__call__)
    domain = inspect.getsource(EmailValidator.validate_domain_part)
    assert "self.user_regex.match(user_part)" in call, call
    assert 'value.rsplit("@", 1)' in call and "len(value) > 320" in call, call
    assert "self.domain_regex.match(domain_part)" in domain, domain


def test_the_email_check_gives_the_validators_verdict_again_for_a_domain_it_has_seen():
    """The domain's verdict is remembered, and a plain user part takes a shorter pattern: the
    same addresses, in any order, get what EmailValidator says of each."""
    field = models.EmailField(null=True)
    convert_cell = convert.cell_converter(field, required=False)
    addresses = [
        "a@example.com",
        "b.c@example.com",
        "a@-example.com",
        "b@-example.com",
        "\u017f@example.com",  # accepted by the validator's pattern (IGNORECASE), not by the short one
        "a..b@example.com",
        ".a@example.com",
        '"quoted user"@example.com',
        "a@[127.0.0.1]",
        "a@localhost",
    ]
    for text in addresses * 2:
        assert imported(convert_cell, text)[0] == django_accepts("email", field, text)[0], text


def test_a_refused_cell_leaves_no_frames_to_the_garbage_collector():
    """Django's ValidationError refers to itself, so a dropped one is freed only by a full
    collection, and its traceback keeps the frames above it: in a worker, the CSV reader's with
    a whole block of lines. A cell that a validator refuses leaves no such garbage."""
    fields = [
        models.EmailField(null=True),
        models.CharField(max_length=20, null=True, validators=[RegexValidator("^a", "starts with no a")]),
    ]
    row = RowConverter(
        [convert.cell_converter(field, required=False) for field in fields], [0, 1], ["email", "code"], operation_id=7
    )
    gc.collect()
    gc.disable()
    try:
        assert row.to_row(3, ["no address", "abc"]) is None
        assert row.to_row(4, ["a@example.com", "zzz"]) is None
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        frames = [garbage for garbage in gc.garbage if isinstance(garbage, types.FrameType)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert frames == []
    assert [reason for _, reason, _ in row.errors] == [
        'email: "no address" is not valid: Enter a valid email address.',
        'code: "zzz" is not valid: starts with no a',
    ]


# A row of every kind, with the empty cell's other cases (required, a default) besides.
ROW_FIELDS = {
    **FIELDS,
    "required text": models.CharField(max_length=5),
    "text with a default": models.CharField(max_length=5, blank=True, default="d"),
    "unbounded text": models.TextField(blank=True),
    "required integer": models.IntegerField(),
    "long email": models.EmailField(max_length=400, null=True),  # over EmailValidator's own limit
}
ROW_CELLS = {**CELLS, "required text": junk, "text with a default": junk, "unbounded text": junk}
ROW_CELLS["long email"] = st.one_of(CELLS["email"], st.emails().map(lambda address: "u" * 300 + address))
ROW_CELLS["required integer"] = CELLS["integer"]


def test_a_rows_inline_code_gives_what_its_converters_give():
    """The row code spells out the common cells' conversion (operations/targets/rows.py): a row
    gives the same row, or the same row error, as the converters called one by one."""
    kinds = sorted(ROW_FIELDS)
    converters = [convert.cell_converter(ROW_FIELDS[kind], required=kind.startswith("required")) for kind in kinds]
    # Read from the end: the row's fields need not be in the file's order.
    indexes = list(range(len(kinds)))[::-1]
    row = RowConverter(converters, indexes, kinds, operation_id=7, fixed=("x",), prefix="7\t", suffix="\tx")

    @settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.tuples(*(ROW_CELLS[kind] for kind in reversed(kinds))))
    @example(tuple("" for _ in kinds))
    @example(tuple(" " for _ in kinds))
    def check(cells):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # naive datetimes: made aware
            inline = row.to_row(3, list(cells))
            inline_errors = row.errors[:]
            row.errors.clear()
            exact = row.convert_exactly(3, list(cells))
            exact_errors = row.errors[:]
            row.errors.clear()
        assert (inline, inline_errors) == (exact, exact_errors), cells

    check()


@pytest.mark.parametrize(
    "parse", sorted({convert._iso_date, *(parse for parse, _ in convert._PARSERS.values())}, key=repr)
)
def test_every_parser_refuses_a_cell_of_spaces(parse):
    """The row code parses a cell that is not empty without looking for spaces only first:
    the converter, which makes such a cell empty, must then get it (a parser raises)."""
    for text in (" ", "  ", "\t", "\u00a0"):
        with pytest.raises((ValueError, TypeError, ArithmeticError, ValidationError)):
            parse(text)
