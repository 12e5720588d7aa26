"""A target's table, written and read for one import (SPEC §13, §4).

Writing goes through the driver, as for UploadedRow (rowstore.py), inside the chunk's
transaction, so that the rows and the checkpoint commit together (I1, I4):

- PostgreSQL: the chunk is COPYed (text format) into a temporary staging table of the
  connection, then moved with one `INSERT ... SELECT ... ORDER BY line ON CONFLICT DO NOTHING`:
  the first row with a key wins, in the file's order, and a row that would break any unique
  constraint of the model is skipped, never failing the chunk (pgloader's way of keeping the
  speed of COPY and still rejecting single rows);
- elsewhere (SQLite): one `executemany` of `INSERT ... ON CONFLICT DO NOTHING`.

The count of rows inserted against rows sent says whether any was skipped (the common case
costs nothing more); only then are the skipped lines looked up, and for each the unique key it
collided with, for the row error's reason.

Every row carries the operation and its line (`ImportedRow`), unique together: a chunk that
runs again after a kill cannot double a row, and a terminate deletes exactly the operation's
rows, by ranges of lines (the unique constraint's index).
"""

import itertools
from collections.abc import Callable, Iterable, Sequence

from django.db import connection, transaction
from django.utils import timezone

from operations.targets.convert import quoted
from operations.targets.declare import LINE_FIELD, OPERATION_FIELD, Plan, Target, missing_value


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
        # Fields no column of this file fills: their default, once for the job.
        now = timezone.now()
        fixed = target.fields_besides(plan.fields)
        self.fixed_columns = [q(f.column) for f in fixed]
        self.fixed_values = [f.get_db_prep_save(missing_value(f, now), connection) for f in fixed]
        self.shown = dict(zip(plan.fields, plan.columns, strict=True))  # field -> its CSV column
        all_columns = [q(meta.get_field(name).column) for name in target.field_names]
        self.stage = q(f"lt_stage_{meta.db_table}"[:63])
        self.stage_columns = all_columns

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
        columns = ", ".join(self.columns)
        with connection.connection.cursor() as cursor:
            cursor.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS {self.stage} ON COMMIT DELETE ROWS AS"
                f" SELECT {self.line_column} AS lt_line, {', '.join(self.stage_columns)} FROM {self.table} WITH NO DATA"
            )
            # Empty: its rows of a chunk vanish with the chunk's commit, or with its rollback.
            sent = 0
            with cursor.copy(f"COPY {self.stage} (lt_line, {columns}) FROM STDIN") as copy:
                for batch in batches:
                    sent += len(batch)
                    copy.write(b"".join(batch))
            fixed = "".join(f", {c}" for c in self.fixed_columns)
            cursor.execute(
                f"INSERT INTO {self.table} ({self.op_column}, {self.line_column}, {columns}{fixed})"
                f" SELECT %s, lt_line, {columns}{', %s' * len(self.fixed_values)} FROM {self.stage}"
                " ORDER BY lt_line ON CONFLICT DO NOTHING",
                [self.operation_id, *self.fixed_values],
            )
            if cursor.rowcount == sent:
                return []
            cursor.execute(
                f"SELECT lt_line, {columns} FROM {self.stage} s WHERE NOT EXISTS (SELECT 1 FROM {self.table} t"
                f" WHERE t.{self.op_column} = %s AND t.{self.line_column} = s.lt_line) ORDER BY lt_line",
                [self.operation_id],
            )
            skipped = cursor.fetchall()
        return [self._refused(row[0], dict(zip(self.plan.fields, row[1:], strict=True))) for row in skipped]

    def _write(self, batches) -> list[tuple[int, str, str]]:
        rows = list(itertools.chain.from_iterable(batches))
        if not rows:
            return []
        names = [self.op_column, self.line_column, *self.columns, *self.fixed_columns]
        marks = ", ".join(["?"] * len(names))
        cursor = connection.connection.cursor()
        try:
            cursor.executemany(
                f"INSERT INTO {self.table} ({', '.join(names)}) VALUES ({marks}) ON CONFLICT DO NOTHING", rows
            )
            if cursor.rowcount == len(rows):
                return []
            cursor.execute(
                f"SELECT {self.line_column} FROM {self.table}"
                f" WHERE {self.op_column} = ? AND {self.line_column} BETWEEN ? AND ?",
                [self.operation_id, rows[0][1], rows[-1][1]],
            )
            stored = {line for (line,) in cursor.fetchall()}
        finally:
            cursor.close()
        width = len(self.plan.fields)
        return [
            self._refused(row[1], dict(zip(self.plan.fields, row[2 : 2 + width], strict=True)))
            for row in rows
            if row[1] not in stored
        ]

    def _refused(self, line: int, values: dict) -> tuple[int, str, str]:
        """The row error of a row the table refused: the unique key it collided with."""
        for key in self.target.unique_keys():
            if not all(values.get(name) is not None for name in key):
                continue
            meta = self.target.model._meta
            condition = " AND ".join(f"{connection.ops.quote_name(meta.get_field(n).column)} = %s" for n in key)
            with connection.cursor() as cursor:
                cursor.execute(
                    f"SELECT {self.op_column}, {self.line_column} FROM {self.table} WHERE {condition}",
                    [values[name] for name in key],
                )
                found = cursor.fetchone()
            if found is None:
                continue
            shown = ", ".join(f"{self.shown.get(name, name)}: {quoted(str(values[name]))}" for name in key)
            if found[0] == self.operation_id:
                return line, f"{shown} is already in line {found[1]} of this file", ""
            return line, f"{shown} is already in the table", ""
        return line, "the row breaks a constraint of the table", ""

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
