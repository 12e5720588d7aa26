"""Results out (SPEC §6): an operation's stored rows and row errors, read in line order by keyset,
and the CSV and JSON-lines encoders that turn them into text.

No request or response here: the API streams these pages (api/results.py). The rows as CSV
come from the encoder the Export type writes its file with (rowstore.export_csv: the database
writes the CSV, `COPY ... TO STDOUT` on PostgreSQL), a range of line numbers a page; JSON lines
and row errors are encoded here, a page of rows at a time.

The rows' CSV is the user's data, given back byte for byte (a value `=1+1` stays `=1+1`). The
row errors' CSV is a report made for spreadsheets: formula cells are neutralised there
(`spreadsheet_csv`), as SPEC §8 asks.

Every read is one range of an index that starts with (operation_id, line_number): the primary
key of UploadedRow, the unique constraint of RowError. `WHERE operation_id = %s AND line_number
> %s ORDER BY line_number LIMIT %s` costs the same for the first page and the thousandth, where
an OFFSET would read and throw away every row before the page.
"""

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator, Sequence

from django.db import connection

from operations import rowstore
from operations.models import RowError, UploadedRow

# Rows a stream reads per query: big enough that the round trips do not count, small enough
# that a page's memory does not either.
STREAM_PAGE_ROWS = 2000
# Line numbers a CSV stream exports per query, at most (~75 bytes a row in the bench: 1.5 MB a
# page). The database writes the CSV, so a page costs Python a few copies of its bytes, not a
# call per row; larger pages keep the per-query cost out of the per-row one. The first page is
# smaller, and the next ones are sized from the bytes a line took, so that wide rows (up to
# the column and field limits) still make pages of about STREAM_PAGE_BYTES.
STREAM_PAGE_LINES = 20_000
STREAM_FIRST_PAGE_LINES = 500
STREAM_PAGE_BYTES = 2 * 1024 * 1024

ROW_ERROR_COLUMNS = ["line_number", "reason", "raw"]
# How a cell starts when a spreadsheet would run it as a formula (OWASP, "CSV Injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

Row = tuple[int, dict]  # line_number, data (a JSON object keyed by the header's columns)
RowErrorRecord = tuple[int, str, str]  # line_number, reason, raw


def _page(table: str, columns: str, *, operation_id: int, after: int, limit: int) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT line_number, {columns} FROM {table}"
            " WHERE operation_id = %s AND line_number > %s ORDER BY line_number LIMIT %s",
            [operation_id, after, limit],
        )
        return cursor.fetchall()


def rows_after(*, operation_id: int, after: int, limit: int) -> list[Row]:
    """Up to `limit` stored rows with line_number > `after`, in line order (one query)."""
    page = _page(UploadedRow._meta.db_table, "data", operation_id=operation_id, after=after, limit=limit)
    # Django's connection hands JSON over as text on both databases; decode it once, here.
    return [(line, json.loads(data) if isinstance(data, str) else data) for line, data in page]


def row_errors_after(*, operation_id: int, after: int, limit: int) -> list[RowErrorRecord]:
    """Up to `limit` row errors with line_number > `after`, in line order (one query)."""
    return _page(RowError._meta.db_table, "reason, raw", operation_id=operation_id, after=after, limit=limit)


def pages(
    read: Callable[..., list[tuple]],
    *,
    operation_id: int,
    after: int = 0,
    limit: int | None = None,
    page_rows: int | None = None,
) -> Iterator[list[tuple]]:
    """Walk `read` (rows_after or row_errors_after) page by page from `after`, at most `limit`
    records in all. Each page is a query of its own, so memory is one page whatever the total."""
    page_rows = page_rows or STREAM_PAGE_ROWS
    left = limit
    while left is None or left > 0:
        want = page_rows if left is None else min(page_rows, left)
        page = read(operation_id=operation_id, after=after, limit=want)
        if page:
            yield page
        if len(page) < want:
            return
        after = page[-1][0]
        if left is not None:
            left -= len(page)


def ordered(data: dict, columns: Sequence[str] | None) -> dict:
    """The row's data in header order. PostgreSQL's jsonb keeps keys in an order of its own."""
    if not columns:
        return data
    return {name: data.get(name, "") for name in columns}


# --- encoders -------------------------------------------------------------------------------


def rows_jsonl(rows: Iterable[Row], columns: Sequence[str] | None) -> str:
    """Rows as JSON lines: {"line_number": 7, "data": {...}}, the data in header order."""
    return "".join(
        json.dumps({"line_number": line, "data": ordered(data, columns)}, ensure_ascii=False) + "\n"
        for line, data in rows
    )


def spreadsheet_cell(value):
    """`value` as a spreadsheet shows it as text: a leading `'` where it would start a formula.
    For reports made to be opened in a spreadsheet only, never for data exports."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def spreadsheet_csv(records: Iterable[Sequence]) -> str:
    """Records as CSV for a spreadsheet (OWASP's advice on CSV injection): formula cells
    neutralised by `spreadsheet_cell`, and every value quoted, so that a separator inside a
    value (`;` where the spreadsheet expects it) cannot start a cell of its own."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writerows([spreadsheet_cell(value) for value in record] for record in records)
    return out.getvalue()


def row_errors_csv(errors: Iterable[RowErrorRecord]) -> str:
    """Row errors hold the rejected text as the user sent it, and the report is read in a
    spreadsheet (the console links it): its cells are neutralised, unlike the rows' CSV."""
    return spreadsheet_csv(errors)


def row_errors_jsonl(errors: Iterable[RowErrorRecord]) -> str:
    return "".join(
        json.dumps(dict(zip(ROW_ERROR_COLUMNS, error, strict=True)), ensure_ascii=False) + "\n" for error in errors
    )


# --- whole exports --------------------------------------------------------------------------


def rows_export(
    *, operation_id: int, columns: Sequence[str] | None, fmt: str, after: int = 0, limit: int | None = None
) -> Iterator[bytes]:
    """The operation's rows as `fmt` ("csv" or "jsonl"), UTF-8, a page at a time. CSV starts
    with the original header; an operation without one (never started) gives an empty file."""
    if fmt == "csv":
        yield from rows_csv_export(operation_id=operation_id, columns=columns, after=after, limit=limit)
        return
    for page in pages(rows_after, operation_id=operation_id, after=after, limit=limit):
        yield rows_jsonl(page, columns).encode()


def rows_csv_export(
    *, operation_id: int, columns: Sequence[str] | None, after: int = 0, limit: int | None = None
) -> Iterator[bytes]:
    """The rows as CSV, by the Export type's encoder: the header, then one `rowstore.export_csv`
    a range of line numbers (about STREAM_PAGE_BYTES, at most STREAM_PAGE_LINES), up to the
    last line stored when the stream starts (one query). Each page is a range of the primary
    key, so the thousandth costs what the first does; `limit` goes into the last page's query."""
    if not columns:
        return
    yield rowstore.csv_header(columns)
    last = rowstore.last_line(operation_id=operation_id)
    left = limit
    lines = min(STREAM_FIRST_PAGE_LINES, STREAM_PAGE_LINES)
    while after < last and (left is None or left > 0):
        up_to = min(after + lines, last)
        data, count = rowstore.export_csv(
            operation_id=operation_id, after=after, up_to=up_to, columns=columns, limit=left
        )
        if data:
            yield data
            lines = max(1, min(STREAM_PAGE_LINES, STREAM_PAGE_BYTES * (up_to - after) // len(data)))
        else:
            lines = STREAM_PAGE_LINES  # a range with nothing stored (rejected lines): go on
        after = up_to
        if left is not None:
            left -= count


def row_errors_export(*, operation_id: int, fmt: str, after: int = 0, limit: int | None = None) -> Iterator[bytes]:
    """The operation's row errors as `fmt` ("csv" with a header line, or "jsonl"), UTF-8, a page
    at a time."""
    if fmt == "csv":
        # The header is ours (nothing in it to neutralise or quote): plain, as it always was.
        yield (",".join(ROW_ERROR_COLUMNS) + "\n").encode()
    for page in pages(row_errors_after, operation_id=operation_id, after=after, limit=limit):
        yield (row_errors_csv(page) if fmt == "csv" else row_errors_jsonl(page)).encode()
