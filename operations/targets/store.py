"""A target's table, written and read for one import (SPEC §13, §4).

Writing goes through the driver, as for UploadedRow (rowstore.py), inside the chunk's
transaction, so that the rows and the checkpoint commit together (I1, I4):

- PostgreSQL: the chunk's unique keys are looked up in the table first (one query a key; only
  the keys this process may have seen before, as a rule: targets/screen.py), and the rows are
  screened in the file's order: the first row with a key wins, a row whose key the table or an
  earlier row of the chunk holds is refused. The others are COPYed (text format) straight into
  the table, inside a savepoint. Where that COPY meets a unique violation, the chunk is
  screened again with all its keys looked up; where the COPY still meets one (a concurrent
  writer took a key meanwhile, or two texts that differ spell equal values), or
  the keys cannot be read from the COPY text, the chunk goes through a temporary staging table
  of the connection instead, moved with one `INSERT ... SELECT ... ORDER BY line ON CONFLICT
  DO NOTHING`: the same verdicts from the table itself, never failing the chunk (pgloader's way
  of keeping the speed of COPY and still rejecting single rows);
- elsewhere (SQLite): one `executemany` of `INSERT ... ON CONFLICT DO NOTHING`.

Elsewhere, and in the staging table's move, the count of rows inserted against rows sent says
whether any was skipped (the common case costs nothing more); only then are the skipped lines
looked up. The reason of a refused row is the first unique key it collided with, looked up in
the table once the chunk's rows are in.

Every row carries the operation and its line (`ImportedRow`), unique together: a chunk that
runs again after a kill cannot double a row, and a terminate deletes exactly the operation's
rows, by ranges of lines (the unique constraint's index).
"""

import datetime
import decimal
import itertools
import uuid
import zlib
from collections.abc import Callable, Iterable, Sequence

from django.db import connection, transaction
from django.utils import timezone

from operations.targets.convert import PG_NULL, copy_text, quoted
from operations.targets.declare import LINE_FIELD, OPERATION_FIELD, Plan, Target, missing_value
from operations.targets.screen import Screen

# SQLite: the rows of a chunk go in by statements of at most this many (see TargetTable._write).
ROWS_A_STATEMENT = 256


class _Undo(Exception):
    """Rolls the move of a chunk back to its savepoint (`strict`)."""


class TargetTable:
    """The target's table as one operation imports into it with one plan."""

    def __init__(self, target: Target, plan: Plan, operation_id: int):
        self.target, self.plan, self.operation_id = target, plan, operation_id
        meta = target.model._meta
        q = connection.ops.quote_name
        self.table = q(meta.db_table)
        self.op_column = q(meta.get_field(OPERATION_FIELD).column)
        self.line_column = q(meta.get_field(LINE_FIELD).column)
        self.columns = [q(meta.get_field(name).column) for name in plan.fields]
        # Fields no column of this file fills: their default, once for the job. On PostgreSQL
        # each row's COPY text carries the operation in front and these at the end, as
        # constants of the row template (`row_prefix`, `row_suffix`), unless one has no plain
        # text form: then they are parameters of the move from the staging table.
        now = timezone.now()
        fixed = target.fields_besides(plan.fields)
        self.fixed_columns = [q(f.column) for f in fixed]
        self.fixed_values = [f.get_db_prep_save(missing_value(f, now), connection) for f in fixed]
        texts = [_copy_literal(value) for value in self.fixed_values]
        self.fixed_in_rows = all(text is not None for text in texts)
        self.row_prefix = f"{operation_id}\t"
        self.row_suffix = "".join(f"\t{text}" for text in texts) if self.fixed_in_rows else ""
        copied = [self.op_column, self.line_column, *self.columns, *(self.fixed_columns if self.fixed_in_rows else [])]
        self.copy_columns = ", ".join(copied)
        self.stage = q(f"lt_stage_{zlib.crc32(self.copy_columns.encode()):08x}_{meta.db_table}"[:63])
        self.shown = dict(zip(plan.fields, plan.columns, strict=True))  # field -> its CSV column
        self.screen = None
        copied_fields = [OPERATION_FIELD, LINE_FIELD, *plan.fields, *(f.name for f in fixed)]
        if connection.vendor == "postgresql" and self.fixed_in_rows and Screen.fits(target, copied_fields):
            self.screen = Screen(target, copied_fields, plan.fields)

    # --- writing ---

    def write(
        self, batches: Iterable[Sequence], *, keep: Callable[[list], bool] | None = None
    ) -> list[tuple[int, str, str]]:
        """Insert the rows (batches made by the import's RowConverter); return the row errors
        (line, reason, raw) of rows a unique constraint refused. `keep(refused)`, if given, is
        asked once the rows are in: False undoes the whole insert (a savepoint; `strict`)."""
        connection.ensure_connection()
        refused: list = []
        try:
            with transaction.atomic(savepoint=keep is not None), connection.wrap_database_errors:
                write = self._write_postgresql if connection.vendor == "postgresql" else self._write
                refused = write(batches)
                if keep is not None and not keep(refused):
                    raise _Undo
        except _Undo:
            pass
        return refused

    def _write_postgresql(self, batches) -> list[tuple[int, str, str]]:
        """The rows the screen lets through COPYed straight into the table (a savepoint around
        the COPY): first as the screen guesses from the keys it has seen, then (if the guess
        missed a key the table holds) with every key looked up, else the chunk through the
        staging table."""
        with connection.connection.cursor() as cursor:
            if self.screen is None:
                return self._unscreened(cursor, batches)
            rows = [row for batch in batches for row in batch]
            speculation = self.screen.speculation
            refused = None
            if speculation.next_chunk():
                refused = self._screened_copy(cursor, rows, look_up_all=False)
                if refused is None:
                    speculation.missed()
                else:
                    speculation.held()
            if refused is None:
                refused = self._screened_copy(cursor, rows, look_up_all=True)
            if refused is None:
                return self._staged(cursor, [b"".join(rows)])
            reasons = self.screen.reasons(cursor, refused)
            return [self._refused(line, values, holders.get) for line, values, holders in reasons]

    def _screened_copy(self, cursor, rows: list[bytes], *, look_up_all: bool) -> list[list[bytes]] | None:
        """COPY the rows the screen lets through (in a savepoint); return the fields of those it
        refused, or None if the COPY met a unique violation after all (rolled back)."""
        from psycopg.errors import UniqueViolation

        taken, refused = self.screen.sort(cursor, rows, look_up_all=look_up_all)
        try:
            with transaction.atomic():
                self._copy(cursor, self.table, [taken], [])
        except UniqueViolation:
            return None
        return refused

    def _unscreened(self, cursor, batches) -> list[tuple[int, str, str]]:
        """Straight into the table when no row is refused, else through the staging table. The
        chunk's COPY text is kept meanwhile (a chunk's worth)."""
        from psycopg.errors import UniqueViolation

        held: list[bytes] = []
        if self.fixed_in_rows:
            try:
                with transaction.atomic():
                    self._copy(cursor, self.table, batches, held)
                return []
            except UniqueViolation:
                held.extend(b"".join(batch) for batch in batches)  # the rest of the chunk
        return self._staged(cursor, held or _joined(batches))

    def _copy(self, cursor, table: str, batches, held: list[bytes]) -> None:
        with cursor.copy(f"COPY {table} ({self.copy_columns}) FROM STDIN") as copy:
            for batch in batches:
                data = b"".join(batch)
                held.append(data)
                copy.write(data)

    def _staged(self, cursor, held: list[bytes]) -> list[tuple[int, str, str]]:
        """COPY into the staging table, then move what the table takes: the first row with a
        key, in line order. Returns the row errors of the rest."""
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {self.stage} ON COMMIT DELETE ROWS AS"
            f" SELECT {self.copy_columns} FROM {self.table} WITH NO DATA"
        )
        # Empty: its rows of a chunk vanish with the chunk's commit, or with its rollback.
        self._copy(cursor, self.stage, [[data] for data in held], [])
        sent = sum(data.count(b"\n") for data in held)  # a row a line: COPY's text escapes line breaks
        params = self.fixed_values if not self.fixed_in_rows else []
        extra = "".join(f", {c}" for c in self.fixed_columns) if params else ""
        cursor.execute(
            f"INSERT INTO {self.table} ({self.copy_columns}{extra})"
            f" SELECT {self.copy_columns}{', %s' * len(params)} FROM {self.stage}"
            f" ORDER BY {self.line_column} ON CONFLICT DO NOTHING",
            params,
        )
        if cursor.rowcount == sent:
            return []
        columns, line = ", ".join(self.columns), self.line_column
        cursor.execute(
            f"SELECT {line}, {columns} FROM {self.stage} s WHERE NOT EXISTS"
            f" (SELECT 1 FROM {self.table} t WHERE t.{self.op_column} = %s AND t.{line} = s.{line})"
            f" ORDER BY {line}",
            [self.operation_id],
        )
        skipped = cursor.fetchall()
        return [self._refused(row[0], dict(zip(self.plan.fields, row[1:], strict=True))) for row in skipped]

    def _write(self, batches) -> list[tuple[int, str, str]]:
        """The rows inserted by parts of ROWS_A_STATEMENT: a part whose count of rows inserted
        falls short has the lines of its rows looked up, not those of the whole chunk."""
        rows = list(itertools.chain.from_iterable(batches))
        names = [self.op_column, self.line_column, *self.columns, *self.fixed_columns]
        marks = ", ".join(["?"] * len(names))
        insert = f"INSERT INTO {self.table} ({', '.join(names)}) VALUES ({marks}) ON CONFLICT DO NOTHING"
        skipped = []
        cursor = connection.connection.cursor()
        try:
            for start in range(0, len(rows), ROWS_A_STATEMENT):
                part = rows[start : start + ROWS_A_STATEMENT]
                cursor.executemany(insert, part)
                if cursor.rowcount != len(part):
                    skipped += self._not_stored(cursor, part)
        finally:
            cursor.close()
        width = len(self.plan.fields)
        return [self._refused(row[1], dict(zip(self.plan.fields, row[2 : 2 + width], strict=True))) for row in skipped]

    def _not_stored(self, cursor, rows: list[tuple]) -> list[tuple]:
        """Those of `rows` (in line order, just inserted) whose line the table does not hold."""
        cursor.execute(
            f"SELECT {self.line_column} FROM {self.table}"
            f" WHERE {self.op_column} = ? AND {self.line_column} BETWEEN ? AND ?",
            [self.operation_id, rows[0][1], rows[-1][1]],
        )
        stored = {line for (line,) in cursor.fetchall()}
        return [row for row in rows if row[1] not in stored]

    def _refused(
        self, line: int, values: dict, holder: Callable[[int], tuple | None] | None = None
    ) -> tuple[int, str, str]:
        """The row error of a row the table refused: the unique key it collided with. `holder`:
        (operation, line) of the row that holds key number i, if looked up already."""
        for index, key in enumerate(self.target.unique_keys()):
            if not all(values.get(name) is not None for name in key):
                continue
            found = self._holder(index, key, line, values) if holder is None else holder(index)
            if found is None:
                continue
            shown = ", ".join(f"{self.shown.get(name, name)}: {quoted(str(values[name]))}" for name in key)
            if found[0] == self.operation_id:
                return line, f"{shown} is already in line {found[1]} of this file", ""
            return line, f"{shown} is already in the table", ""
        return line, "the row breaks a constraint of the table", ""

    def _holder(self, index: int, key: Sequence[str], line: int, values: dict) -> tuple[int, int] | None:
        """(operation, line) of the row in the table that holds the key's values, if any."""
        meta = self.target.model._meta
        condition = " AND ".join(f"{connection.ops.quote_name(meta.get_field(n).column)} = %s" for n in key)
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {self.op_column}, {self.line_column} FROM {self.table} WHERE {condition}",
                [values[name] for name in key],
            )
            return cursor.fetchone()

    def close(self) -> None:
        """Free the screen's filter now: the job's objects are freed by the garbage collector's
        oldest generation only (a converter refers to itself), which may come several jobs
        later, each holding its filter meanwhile."""
        if self.screen is not None:
            self.screen.seen = None

    # --- terminate ---

    def delete_lines(self, *, after: int, up_to: int | None = None) -> int:
        """Delete this operation's rows with after < line <= up_to (no bound: all after)."""
        bound, params = "", [self.operation_id, after]
        if up_to is not None:
            bound, params = f" AND {self.line_column} <= %s", [*params, up_to]
        with connection.cursor() as cursor:
            cursor.execute(
                f"DELETE FROM {self.table} WHERE {self.op_column} = %s AND {self.line_column} > %s{bound}", params
            )
            return cursor.rowcount


def _joined(batches) -> list[bytes]:
    return [b"".join(batch) for batch in batches]


def _copy_literal(value) -> str | None:
    """`value` in COPY's text format, if it is of a type whose str() PostgreSQL reads back as
    the same value (None: it is not)."""
    if value is None:
        return PG_NULL
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, (str, int, float, decimal.Decimal, datetime.date, uuid.UUID)):
        return copy_text(value.isoformat() if isinstance(value, datetime.date) else str(value))
    return None
