"""The hot path: UploadedRow writes through the database driver (issue #4).

The ORM's bulk_create spends most of its time in Python; the driver's executemany (SQLite) or
COPY (PostgreSQL) loads the same rows several times faster. Everything here runs on Django's
own connection, so it is part of whatever transaction the caller has open.
"""

import json
from collections.abc import Callable, Iterable, Sequence

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
