"""The hot path: UploadedRow written and read through the database driver (issue #4).

The ORM's bulk_create spends most of its time in Python; the driver's executemany (SQLite) or
COPY (PostgreSQL) loads the same rows several times faster. Everything here runs on Django's
own connection, so it is part of whatever transaction the caller has open.
"""

import csv
import io
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import contextmanager

from django.db import connection

from operations.models import UploadedRow

Row = tuple[int, int, str]  # operation_id, line_number, data as JSON text

_TABLE = UploadedRow._meta.db_table


def json_object_encoder(columns: Sequence[str]) -> Callable[[Sequence[str]], str]:
    """A function turning a row's fields into the JSON object {column: field}.

    Same text as json.dumps(dict(zip(columns, fields)), ensure_ascii=False), about seven times
    faster: the keys are encoded once into a template, and the function that fills it in is
    generated for the number of columns, so that each row costs one C escape per field and
    one string format. (The generated source holds only indexes; names stay in the template.)
    """
    escape = json.encoder.encode_basestring
    keys = [escape(name).replace("%", "%%") for name in columns]
    template = "{" + ", ".join(f"{key}: %s" for key in keys) + "}"
    fill = "".join(f"escape(fields[{i}]), " for i in range(len(columns)))
    return eval(f"lambda fields: template % ({fill})", {"template": template, "escape": escape})


def insert_rows(rows: Iterable[Row]) -> None:
    """Insert rows (a list, or an iterator that streams into the database as it is read)."""
    connection.ensure_connection()
    raw = connection.connection
    # Driver errors become Django's (OperationalError...), so that the worker tells a lost
    # connection, which it retries, from a real failure.
    with connection.wrap_database_errors:
        if connection.vendor == "postgresql":
            copy_sql = f"COPY {_TABLE} (operation_id, line_number, data) FROM STDIN"
            with raw.cursor() as cursor, cursor.copy(copy_sql) as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            raw.executemany(f"INSERT INTO {_TABLE} (operation_id, line_number, data) VALUES (?, ?, ?)", rows)


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


def export_csv(
    *, operation_id: int, after: int, up_to: int, columns: Sequence[str], match: Mapping[str, str]
) -> tuple[bytes, int]:
    """The stored rows with after < line_number <= up_to whose `match` columns equal its values,
    as CSV lines (values in `columns` order, no header), and how many rows that is.

    The database takes the values out of the JSON (PostgreSQL even writes the CSV, with
    `COPY ... TO STDOUT`), so Python only moves bytes, or hands tuples to the csv module. Both
    quote minimally and end lines with "\n", so both databases give files that parse the same.
    """
    if connection.vendor == "postgresql":
        return _export_csv_postgresql(operation_id, after, up_to, columns, match)
    return _export_csv_sqlite(operation_id, after, up_to, columns, match)


def _export_csv_sqlite(operation_id, after, up_to, columns, match) -> tuple[bytes, int]:
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
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {values} FROM {_TABLE} WHERE {conditions} ORDER BY line_number", params)
        rows = cursor.fetchall()
    if not plain:
        records = (json.loads(data) for (data,) in rows)
        rows = [
            [record.get(name, "") for name in columns]
            for record in records
            if all(record.get(name) == value for name, value in match.items())
        ]
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue().encode(), len(rows)


def _export_csv_postgresql(operation_id, after, up_to, columns, match) -> tuple[bytes, int]:
    from psycopg import sql

    values = sql.SQL(", ").join(sql.SQL("data ->> {}").format(sql.Literal(name)) for name in columns)
    conditions = [
        sql.SQL("operation_id = {} AND line_number > {} AND line_number <= {}").format(
            sql.Literal(operation_id), sql.Literal(after), sql.Literal(up_to)
        ),
        *(sql.SQL("data ->> {} = {}").format(sql.Literal(name), sql.Literal(value)) for name, value in match.items()),
    ]
    query = sql.SQL("COPY (SELECT {} FROM {} WHERE {} ORDER BY line_number) TO STDOUT (FORMAT csv)").format(
        values, sql.Identifier(_TABLE), sql.SQL(" AND ").join(conditions)
    )
    connection.ensure_connection()
    with connection.wrap_database_errors, connection.connection.cursor() as cursor, _primary_key_order(cursor):
        with cursor.copy(query) as copy:
            # One CopyData message a row, each a view of a buffer libpq allocated for it: append
            # each to one buffer as it comes, so that libpq frees it at once. (b"".join(copy)
            # held all of a chunk's buffers until the end, and cost the worker twice the raw
            # driver's CPU per row.)
            data, read = bytearray(), copy.read
            while row := read():
                data += row
        return bytes(data), cursor.rowcount


@contextmanager
def _primary_key_order(cursor):
    """Read a range of line numbers by walking the primary key, which returns the rows in line
    order already. For a range PostgreSQL's planner prefers a bitmap scan of the range, then a
    sort of it by line_number: about three times the backend's time for the same rows (the
    statistics say nothing of the table's rows lying in key order, as they do). The settings
    last for the statement only, so nothing else on the connection is affected."""
    cursor.execute("SET enable_seqscan TO off; SET enable_bitmapscan TO off")
    try:
        yield
    finally:
        from psycopg.pq import TransactionStatus

        # In a failed transaction the rollback undoes the SET; on a lost connection there is
        # nothing to reset.
        if cursor.connection.info.transaction_status in (TransactionStatus.IDLE, TransactionStatus.INTRANS):
            cursor.execute("RESET enable_seqscan; RESET enable_bitmapscan")
