"""The hot path: UploadedRow written and read through the database driver.

The ORM's bulk_create spends most of its time in Python; the driver's executemany (SQLite) or
COPY (PostgreSQL) loads the same rows several times faster. Everything here runs on Django's
own connection, so it is part of whatever transaction the caller has open.
"""

import csv
import io
import itertools
import json
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from operator import itemgetter

from django.db import connection

from operations.models import UploadedRow

Row = tuple[int, int, str]  # operation_id, line_number, data as JSON text

_TABLE = UploadedRow._meta.db_table


def _json_object_template(columns: Sequence[str]) -> tuple[str, str]:
    """The JSON object {column: field} as a %-template of its values, and the source of the
    expression that fills it in (one C escape per field, `fields[i]`): the keys are encoded
    once, and the generated source holds only indexes, names stay in the template."""
    keys = [json.encoder.encode_basestring(name).replace("%", "%%") for name in columns]
    template = "{" + ", ".join(f"{key}: %s" for key in keys) + "}"
    fill = "".join(f"escape(fields[{i}]), " for i in range(len(columns)))
    return template, fill


def _generated(source: str, template: str, **names) -> Callable:
    return eval(source, {"template": template, "escape": json.encoder.encode_basestring, **names})


def json_object_encoder(columns: Sequence[str]) -> Callable[[Sequence[str]], str]:
    """A function turning a row's fields into the JSON object {column: field}.

    Same text as json.dumps(dict(zip(columns, fields)), ensure_ascii=False), about seven times
    faster: each row costs one C escape per field and one string format.
    """
    template, fill = _json_object_template(columns)
    return _generated(f"lambda fields: template % ({fill})", template)


# A row in COPY's binary format: its field count, then each field as its length and its bytes;
# operation_id and line_number as 8-byte integers, data as jsonb's binary form (a version byte,
# then the JSON text). PostgreSQL's backend reads a field by its length, where the text format
# has it scan every byte twice for tabs, newlines and backslashes: the backend, which bounds the
# import's speed, spends less CPU a row (docs/performance.md), for a little more of the worker's.
_BINARY_ROW_HEAD = struct.Struct(">hiqi")  # 3 fields; 8 bytes: operation_id; 8 bytes: ...
_BINARY_LINE_AND_DATA = struct.Struct(">qi")  # ... line_number; the length of data
_JSONB_VERSION = "\x01"
_BINARY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)  # no flags, no header extension
_BINARY_TRAILER = struct.pack(">h", -1)


def row_encoder(
    operation_id: int, columns: Sequence[str], *, tuples: bool = False
) -> Callable[[int, Sequence], object]:
    """A function (line number, fields) -> the row, as `write_rows` takes it on this database.

    On PostgreSQL that is the row in COPY's binary format, its JSON object made by the same
    format as json_object_encoder's: one string format, one encode and one struct pack a row.
    Elsewhere, or with `tuples`, the Row tuple.
    """
    template, fill = _json_object_template(columns)
    if connection.vendor == "postgresql" and not tuples:
        return _generated(
            f"lambda line, fields: head + pack(line, len(data := (template % ({fill})).encode())) + data",
            _JSONB_VERSION + template,
            head=_binary_head(operation_id),
            pack=_BINARY_LINE_AND_DATA.pack,
        )
    return _generated(
        f"lambda line, fields: (operation_id, line, template % ({fill}))", template, operation_id=operation_id
    )


def _binary_head(operation_id: int) -> bytes:
    """What every binary row of the operation begins with: the field count and operation_id."""
    return _BINARY_ROW_HEAD.pack(3, 8, operation_id, 8)


def _binary_row(row: Row) -> bytes:
    """A Row tuple as row_encoder's generated function makes it from fields."""
    operation_id, line, text = row
    data = (_JSONB_VERSION + text).encode()
    return _binary_head(operation_id) + _BINARY_LINE_AND_DATA.pack(line, len(data)) + data


def write_rows(batches: Iterable[Sequence]) -> None:
    """Insert batches of rows made by `row_encoder` (an iterator of batches streams into the
    database as it is read; each batch is sent whole, so a batch bounds the memory)."""
    connection.ensure_connection()
    raw = connection.connection
    # Driver errors become Django's (OperationalError...), so that the worker tells a lost
    # connection, which it retries, from a real failure.
    with connection.wrap_database_errors:
        if connection.vendor == "postgresql":
            copy_sql = f"COPY {_TABLE} (operation_id, line_number, data) FROM STDIN (FORMAT BINARY)"
            with raw.cursor() as cursor, cursor.copy(copy_sql) as copy:
                # Sent as blocks, psycopg leaves the format's signature and trailer to us.
                copy.write(_BINARY_SIGNATURE)
                for batch in batches:
                    copy.write(b"".join(batch))
                copy.write(_BINARY_TRAILER)
        else:
            rows = itertools.chain.from_iterable(batches)
            raw.executemany(f"INSERT INTO {_TABLE} (operation_id, line_number, data) VALUES (?, ?, ?)", rows)


def insert_rows(rows: Iterable[Row]) -> None:
    """Insert Row tuples (a list, or an iterator read as it is written), one row a batch."""
    if connection.vendor == "postgresql":
        write_rows([_binary_row(row)] for row in rows)
    else:
        write_rows([row] for row in rows)


def delete_lines(*, operation_id: int, after: int, up_to: int | None = None) -> int:
    """Delete the rows with after < line_number <= up_to (no upper bound: all after); return
    how many went. Always a range of the primary key, so PostgreSQL walks the index even where
    its statistics still expect rows that were deleted a moment ago."""
    bound, params = "", [operation_id, after]
    if up_to is not None:
        bound, params = " AND line_number <= %s", [*params, up_to]
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {_TABLE} WHERE operation_id = %s AND line_number > %s{bound}", params)
        return cursor.rowcount


def csv_header(columns: Sequence[str]) -> bytes:
    """The header line of export_csv's CSV: the column names, quoted the way the csv module does."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(columns)
    return out.getvalue().encode()


def last_line(*, operation_id: int) -> int:
    """The highest line number stored for the operation (0 if none): one step down the primary key."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT MAX(line_number) FROM {_TABLE} WHERE operation_id = %s", [operation_id])
        return cursor.fetchone()[0] or 0


def export_csv(
    *,
    operation_id: int,
    after: int,
    up_to: int,
    columns: Sequence[str],
    match: Mapping[str, str] | None = None,
    limit: int | None = None,
) -> tuple[bytes, int]:
    """The stored rows with after < line_number <= up_to whose `match` columns equal its values
    (the first `limit` of them, if given), as CSV lines (values in `columns` order, no header:
    csv_header), and how many rows that is. One statement, a range of the primary key, so a
    range deep in the operation costs what the first one does.

    The encoder of both the Export type (a part file per chunk) and the rows stream
    (`/rows/?format=csv`, a page at a time). The database takes the values out of the JSON
    (PostgreSQL even writes the CSV, with `COPY ... TO STDOUT`), so Python only moves bytes, or
    hands tuples to the csv module. Both quote only where needed and end lines with "\n", so both
    databases give files that parse the same (PostgreSQL quotes an empty value: `""`).
    """
    match = match or {}
    if connection.vendor == "postgresql":
        return _export_csv_postgresql(operation_id, after, up_to, columns, match, limit)
    return _export_csv_sqlite(operation_id, after, up_to, columns, match, limit)


def _export_csv_sqlite(operation_id, after, up_to, columns, match, limit) -> tuple[bytes, int]:
    # A JSON path quotes a label with double quotes and has no escape for one inside it: such
    # rare names are read from the decoded row instead.
    plain = all('"' not in name for name in (*columns, *match))
    conditions, params = "operation_id = %s AND line_number > %s AND line_number <= %s", [operation_id, after, up_to]
    if plain:
        values = ", ".join(["data ->> %s"] * len(columns))
        params = [*(f'$."{name}"' for name in columns), *params]
        for name, value in match.items():
            conditions += " AND data ->> %s = %s"
            params += [f'$."{name}"', value]
    else:
        values = "data"
    bound = ""
    if limit is not None and (plain or not match):
        bound, params = " LIMIT %s", [*params, limit]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {values} FROM {_TABLE} WHERE {conditions} ORDER BY line_number{bound}", params)
        if plain:
            # From the driver's cursor straight into the csv module, counted in C on the way: the
            # rows never exist as a list, only as the page's text (the rows stream's memory).
            counted = itertools.count()
            with connection.wrap_database_errors:
                writer.writerows(map(itemgetter(0), zip(cursor.cursor, counted, strict=False)))
            return out.getvalue().encode(), next(counted)
        records = (json.loads(data) for (data,) in cursor.fetchall())
        rows = [
            [record.get(name, "") for name in columns]
            for record in records
            if all(record.get(name) == value for name, value in match.items())
        ][:limit]
    writer.writerows(rows)
    return out.getvalue().encode(), len(rows)


def _export_csv_postgresql(operation_id, after, up_to, columns, match, limit) -> tuple[bytes, int]:
    from psycopg import sql

    values = sql.SQL(", ").join(sql.SQL("data ->> {}").format(sql.Literal(name)) for name in columns)
    conditions = [
        sql.SQL("operation_id = {} AND line_number > {} AND line_number <= {}").format(
            sql.Literal(operation_id), sql.Literal(after), sql.Literal(up_to)
        ),
        *(sql.SQL("data ->> {} = {}").format(sql.Literal(name), sql.Literal(value)) for name, value in match.items()),
    ]
    bound = sql.SQL("") if limit is None else sql.SQL(" LIMIT {}").format(sql.Literal(limit))
    query = sql.SQL("COPY (SELECT {} FROM {} WHERE {} ORDER BY line_number{}) TO STDOUT (FORMAT csv)").format(
        values, sql.Identifier(_TABLE), sql.SQL(" AND ").join(conditions), bound
    )
    with connection.cursor() as wrapper:
        cursor = wrapper.cursor  # psycopg's own, for copy(); the wrapper logs it with the ORM's queries
        logged = wrapper.debug_sql(query.as_string(cursor)) if hasattr(wrapper, "debug_sql") else nullcontext()
        with connection.wrap_database_errors, _primary_key_order(cursor.connection):
            with logged, cursor.copy(query) as copy:
                # One CopyData message a row, each a view of a buffer libpq allocated for it:
                # append each to one buffer as it comes, so that libpq frees it at once.
                # (b"".join(copy) held all of a chunk's buffers until the end, and cost the
                # worker twice the raw driver's CPU per row.)
                data, read = bytearray(), copy.read
                while row := read():
                    data += row
            return bytes(data), cursor.rowcount


@contextmanager
def _primary_key_order(raw):
    """Have PostgreSQL read the range by walking the primary key, which gives the rows in line
    order. For ranges of some tens of thousands of rows (an export's chunks) its planner prefers
    a bitmap scan of the range and then a sort by line_number, which costs the backend much
    more than the index scan, with statistics or without, and no form of the condition avoids
    it everywhere. So the scans that would need a sort are off for the COPY alone: set before it,
    reset after it (two round trips a chunk or page). Kept for what it buys on the export target
    (docs/performance.md, "Private APIs kept")."""
    raw.execute("SET enable_seqscan TO off; SET enable_bitmapscan TO off")
    try:
        yield
    finally:
        from psycopg.pq import TransactionStatus

        # In a failed transaction the rollback undoes the SET; on a lost connection there is
        # nothing to reset.
        if raw.info.transaction_status in (TransactionStatus.IDLE, TransactionStatus.INTRANS):
            raw.execute("RESET enable_seqscan; RESET enable_bitmapscan")
