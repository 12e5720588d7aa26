"""The row store's hot path: the hand-made JSON encoder and the driver-level writes.

The encoder must produce exactly what `json.dumps` produces, whatever the column names and
fields contain; the writes must land in the caller's transaction, keep (operation, line)
unique (I1) and delete exactly the lines asked for (I3's rollback).
"""

import json

import pytest
from django.db import IntegrityError, connection, transaction
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from operations import rowstore
from operations.models import Operation, UploadedRow

# Pieces that break naive encoders: %-formatting, JSON escapes, control characters.
TRICKY = ["%", "%s", "%%", "%(x)s", "%d", '"', "\\", '\\"', "\\u0041", "{}", ": ", ", ", "\n", "\r", "\t", "\b", "\f"]
TRICKY += [chr(code) for code in range(0x20)] + ["\x7f", "\x85", "\u2028", "\u2029", "é", "😀", "\ufeff"]


def texts(*, nul: bool) -> st.SearchStrategy[str]:
    characters = st.characters(exclude_categories=("Cs",), exclude_characters="" if nul else "\x00")
    pieces = [piece for piece in TRICKY if nul or "\x00" not in piece]
    return st.lists(st.one_of(st.sampled_from(pieces), st.text(characters, max_size=5)), max_size=4).map("".join)


@st.composite
def tables(draw, *, nul: bool = True, max_rows: int = 4) -> tuple[list[str], list[list[str]]]:
    columns = draw(st.lists(texts(nul=nul), max_size=6, unique=True))
    rows = draw(
        st.lists(st.lists(texts(nul=nul), min_size=len(columns), max_size=len(columns)), min_size=1, max_size=max_rows)
    )
    return columns, rows


@hypothesis_settings(max_examples=400, deadline=None)
@given(table=tables())
def test_json_object_encoder_matches_json_dumps(table):
    columns, rows = table
    encode = rowstore.json_object_encoder(columns)
    for fields in rows:  # one encoder serves every row of the file
        expected = dict(zip(columns, fields, strict=True))
        text = encode(fields)
        assert text == json.dumps(expected, ensure_ascii=False)
        assert json.loads(text) == expected


def test_json_object_encoder_examples():
    encode = rowstore.json_object_encoder(["a%s", 'q"', "b\\", "%"])
    assert encode(["%d", "x\ny", "", "100%"]) == '{"a%s": "%d", "q\\"": "x\\ny", "b\\\\": "", "%": "100%"}'
    assert rowstore.json_object_encoder([])([]) == "{}"


# --- writes on the real database ---------------------------------------------------------------


def new_operation() -> Operation:
    return Operation.objects.create(state=Operation.State.RUNNING)


def stored(op: Operation) -> list[tuple[int, dict]]:
    return list(UploadedRow.objects.filter(operation=op).order_by("line_number").values_list("line_number", "data"))


def insert_lines(op: Operation, lines) -> None:
    rowstore.insert_rows([(op.pk, line, json.dumps({"line": str(line)})) for line in lines])


@pytest.mark.django_db
@hypothesis_settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(table=tables(nul=False, max_rows=6))  # NUL bytes never pass the upload check (and jsonb refuses them)
def test_insert_rows_stores_the_encoded_objects(table):
    columns, rows = table
    op = new_operation()
    encode = rowstore.json_object_encoder(columns)
    rowstore.insert_rows([(op.pk, line, encode(fields)) for line, fields in enumerate(rows, start=1)])
    assert stored(op) == [(line, dict(zip(columns, fields, strict=True))) for line, fields in enumerate(rows, start=1)]


@pytest.mark.django_db
@hypothesis_settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(table=tables(nul=False, max_rows=6), split=st.integers(0, 6))
def test_rows_of_the_row_encoder_are_stored_as_their_objects(table, split):
    """The worker's way: rows encoded for this database (on PostgreSQL, rows in COPY's binary
    format), in batches."""
    columns, rows = table
    op = new_operation()
    encode = rowstore.row_encoder(op.pk, columns)
    encoded = [encode(line, fields) for line, fields in enumerate(rows, start=1)]
    rowstore.write_rows([encoded[:split], encoded[split:]])
    assert stored(op) == [(line, dict(zip(columns, fields, strict=True))) for line, fields in enumerate(rows, start=1)]
    assert rowstore.row_encoder(op.pk, columns, tuples=True)(7, rows[0]) == (
        op.pk,
        7,
        json.dumps(dict(zip(columns, rows[0], strict=True)), ensure_ascii=False),
    )


@pytest.mark.django_db
def test_insert_rows_of_nothing_writes_nothing():
    op = new_operation()
    rowstore.insert_rows([])
    assert stored(op) == []


@pytest.mark.django_db(transaction=True)
def test_insert_rows_is_part_of_the_callers_transaction():
    """A chunk that rolls back takes its rows with it (I1, I2)."""
    op = new_operation()

    class Boom(Exception):
        pass

    with pytest.raises(Boom), transaction.atomic():
        insert_lines(op, range(1, 6))
        assert len(stored(op)) == 5  # visible inside the transaction
        raise Boom
    assert stored(op) == []
    with transaction.atomic():
        insert_lines(op, range(1, 4))
    assert [line for line, _ in stored(op)] == [1, 2, 3]


def driver_integrity_error() -> type[Exception]:
    return connection.Database.IntegrityError


@pytest.mark.django_db
def test_the_database_refuses_a_line_twice():
    """I1: uniqueness of (operation, line number) is enforced by the database itself."""
    op = new_operation()
    insert_lines(op, [1, 2])
    with pytest.raises((IntegrityError, driver_integrity_error())), transaction.atomic():
        rowstore.insert_rows([(op.pk, 3, "{}"), (op.pk, 2, '{"again": "yes"}')])
    assert stored(op) == [(1, {"line": "1"}), (2, {"line": "2"})]
    other = new_operation()
    insert_lines(other, [1, 2])  # the same line numbers of another operation are fine
    assert [line for line, _ in stored(other)] == [1, 2]


@pytest.mark.django_db
def test_insert_rows_raises_djangos_database_errors():
    """The worker tells a lost connection (retry from the checkpoint) from a real failure by
    Django's exception classes (worker.Runner.run catches django.db.OperationalError and
    InterfaceError). Rows written through the raw driver must raise those same classes, as every
    ORM query does, or a connection lost during COPY/executemany fails the operation instead
    of retrying it. A duplicate key is the easiest driver error to provoke."""
    op = new_operation()
    insert_lines(op, [1])
    with pytest.raises(Exception) as raised, transaction.atomic():
        insert_lines(op, [1])
    assert isinstance(raised.value, IntegrityError), f"{type(raised.value).__module__}.{type(raised.value).__name__}"


@pytest.mark.django_db
def test_delete_lines_deletes_exactly_the_range_of_one_operation():
    op, other = new_operation(), new_operation()
    insert_lines(op, range(1, 11))
    insert_lines(other, range(1, 6))
    assert rowstore.delete_lines(operation_id=op.pk, after=3, up_to=7) == 4
    assert [line for line, _ in stored(op)] == [1, 2, 3, 8, 9, 10]
    assert rowstore.delete_lines(operation_id=op.pk, after=3, up_to=7) == 0
    assert rowstore.delete_lines(operation_id=op.pk, after=9, up_to=9) == 0
    assert rowstore.delete_lines(operation_id=op.pk, after=0, up_to=1) == 1
    assert [line for line, _ in stored(op)] == [2, 3, 8, 9, 10]
    assert [line for line, _ in stored(other)] == [1, 2, 3, 4, 5]
    assert rowstore.delete_lines(operation_id=op.pk, after=0) == 5
    assert stored(op) == []
    assert [line for line, _ in stored(other)] == [1, 2, 3, 4, 5]


@pytest.mark.django_db
@hypothesis_settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    lines=st.sets(st.integers(1, 60), max_size=30),
    after=st.integers(0, 70),
    count=st.integers(0, 70),
)
def test_delete_lines_matches_its_definition(lines, after, count):
    op = new_operation()
    insert_lines(op, sorted(lines))
    up_to = after + count
    deleted = rowstore.delete_lines(operation_id=op.pk, after=after, up_to=up_to)
    assert deleted == len([line for line in lines if after < line <= up_to])
    assert [line for line, _ in stored(op)] == sorted(line for line in lines if not after < line <= up_to)


@pytest.mark.django_db
def test_export_csv_takes_a_range_a_filter_and_a_limit_in_one_logged_query(django_assert_num_queries):
    """One statement per call on both databases (PostgreSQL's COPY is in Django's query log too,
    so that a page's queries can be counted), the range of the primary key, in line order."""
    op = new_operation()
    rowstore.insert_rows([(op.pk, n, json.dumps({"n": str(n), "odd": str(n % 2)})) for n in range(1, 11)])

    def export(**kwargs):
        with django_assert_num_queries(1):
            return rowstore.export_csv(operation_id=op.pk, columns=["n"], **kwargs)

    assert export(after=2, up_to=6) == (b"3\n4\n5\n6\n", 4)
    assert export(after=2, up_to=6, limit=3) == (b"3\n4\n5\n", 3)
    assert export(after=0, up_to=10, match={"odd": "1"}, limit=2) == (b"1\n3\n", 2)
    assert export(after=10, up_to=20) == (b"", 0)
    assert rowstore.last_line(operation_id=op.pk) == 10
    assert rowstore.last_line(operation_id=new_operation().pk) == 0
    assert rowstore.csv_header(["a", "b,c", 'd"']) == b'a,"b,c","d"""\n'


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's planner settings")
def test_export_csv_leaves_the_planner_settings_as_they_were():
    """The COPY walks the primary key (no bitmap scan and sort of the range); the settings that
    make it do so are reset afterwards, in autocommit and inside a transaction alike."""
    op = new_operation()
    insert_lines(op, range(1, 6))

    def settings() -> list[str]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_setting('enable_seqscan'), current_setting('enable_bitmapscan')")
            return list(cursor.fetchone())

    assert rowstore.export_csv(operation_id=op.pk, after=1, up_to=4, columns=["line"]) == (b"2\n3\n4\n", 3)
    assert settings() == ["on", "on"]
    with transaction.atomic():
        assert rowstore.export_csv(operation_id=op.pk, after=0, up_to=9, columns=["line"])[1] == 5
        assert settings() == ["on", "on"]
