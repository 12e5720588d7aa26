"""A target import's rows read back (SPEC §13, §6): typed values in line order, under the
mapped header (the file's columns that filled a field, in the file's order).

Each page is one keyset query on the unique (operation, line) index, through the ORM, so that
every value comes back as its field's Python type on either database: JSON lines carry numbers
as numbers, booleans as booleans, dates and times in ISO 8601; CSV spells them the same way
(true/false, ISO dates, NULL as an empty cell).
"""

import csv
import datetime
import decimal
import io
import json
import uuid
from collections.abc import Iterator, Mapping

from operations import results
from operations.targets.declare import LINE_FIELD, OPERATION_FIELD, Plan, Target

PAGE_ROWS = 2000

Row = tuple[int, dict]  # line, {column: typed value}


def json_value(value):
    """A typed value as JSON has it (`default` of json.dumps)."""
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() and abs(value) < 2**53 else float(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def csv_value(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime.date):
        return value.isoformat()
    return str(value)


class ImportedRows:
    """The rows `operation_id` imported into `target` with `plan`."""

    def __init__(self, target: Target, plan: Plan, operation_id: int):
        self.target, self.plan, self.operation_id = target, plan, operation_id
        self.header = plan.header()
        self.fields = plan.ordered_fields()

    def rows_after(self, *, after: int, limit: int, up_to: int | None = None) -> list[Row]:
        """Up to `limit` rows with line > `after` (and <= `up_to`), in line order: one query."""
        lines = {f"{OPERATION_FIELD}": self.operation_id, f"{LINE_FIELD}__gt": after}
        if up_to is not None:
            lines[f"{LINE_FIELD}__lte"] = up_to
        query = (
            self.target.model._default_manager.filter(**lines)
            .order_by(LINE_FIELD)
            .values_list(LINE_FIELD, *self.fields)[:limit]
        )
        return [(row[0], dict(zip(self.header, row[1:], strict=True))) for row in query]

    def pages(self, *, after: int = 0, limit: int | None = None) -> Iterator[list[Row]]:
        """Page by page from `after`, at most `limit` rows in all (as results.pages walks)."""

        def read(*, operation_id: int, after: int, limit: int) -> list[Row]:
            return self.rows_after(after=after, limit=limit)

        return results.pages(read, operation_id=self.operation_id, after=after, limit=limit, page_rows=PAGE_ROWS)

    def export(self, *, fmt: str, after: int = 0, limit: int | None = None) -> Iterator[bytes]:
        """Every row as "csv" (the mapped header first) or "jsonl" ({"line_number", "data"})."""
        if fmt == "csv":
            yield _csv_lines([self.header])
            for page in self.pages(after=after, limit=limit):
                yield _csv_lines([csv_value(v) for v in data.values()] for _, data in page)
            return
        for page in self.pages(after=after, limit=limit):
            yield "".join(
                json.dumps({"line_number": line, "data": data}, ensure_ascii=False, default=json_value) + "\n"
                for line, data in page
            ).encode()

    def export_csv(self, *, after: int, up_to: int, match: Mapping[str, str] | None = None) -> tuple[bytes, int]:
        """The rows with after < line <= up_to whose `match` columns read (as in the CSV) as its
        values: CSV lines without the header, and how many; the Export type's chunk."""
        match = match or {}
        rows = []
        while True:
            page = self.rows_after(after=after, limit=PAGE_ROWS, up_to=up_to)
            for _, data in page:
                cells = {column: csv_value(value) for column, value in data.items()}
                if all(cells.get(column) == value for column, value in match.items()):
                    rows.append(list(cells.values()))
            if len(page) < PAGE_ROWS:
                break
            after = page[-1][0]
        return _csv_lines(rows), len(rows)


def _csv_lines(rows) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue().encode()
