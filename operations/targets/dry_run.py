"""A dry run into a target (SPEC §13, §10): every row converted and checked as the import would,
the same row errors, and nothing left in the target's table.

A row the import would refuse for a unique key is one that collides with a row already in the
table (the application's, or an earlier import's) or with an earlier row of the same file that
was accepted. The dry run gets both verdicts from the database itself, as the import does:

- each chunk goes into a staging table, then into the target's table inside a savepoint that is
  rolled back at once: the table's own unique constraints say which rows collide with rows
  already there or earlier in the chunk, as in the import's move from its staging table;
- the keys of the rows accepted in earlier chunks are kept apart (`DryRunKey`, committed with
  each chunk's checkpoint, so that a pause, a kill or a resume neither forgets nor doubles one),
  spelled by the database as JSON arrays of the stored values; a staged row whose key is among
  them is left out of the savepoint's insert, as the import's table would refuse it.

The reason of each refused row is the import's: the first unique key, in the model's order, that
the table (within the savepoint) or the kept keys hold.
"""

import zlib
from collections.abc import Callable, Iterable, Sequence

from django.db import connection, transaction

from operations.models import DryRunKey
from operations.targets.declare import Plan, Target
from operations.targets.store import TargetTable


class _Undo(Exception):
    """Rolls the savepoint's insert back."""


class DryRunTable(TargetTable):
    """The target's table as a dry run checks a file against it, writing nothing into it."""

    def __init__(self, target: Target, plan: Plan, operation_id: int):
        super().__init__(target, plan, operation_id)
        q = connection.ops.quote_name
        meta = target.model._meta
        self.names = [self.op_column, self.line_column, *self.columns, *self.fixed_columns]
        self.check_stage = q(f"lt_check_{zlib.crc32(','.join(self.names).encode()):08x}_{meta.db_table}"[:63])
        self.ledger = q(DryRunKey._meta.db_table)
        self.keys = [[q(meta.get_field(name).column) for name in key] for key in target.unique_keys()]

    def _key_value(self, alias: str, columns: Sequence[str]) -> str:
        """The SQL of a key's values as one text: a JSON array, as the database spells them."""
        values = ", ".join(f"{alias}.{column}" for column in columns)
        if connection.vendor == "postgresql":
            return f"json_build_array({values})::text"
        return f"json_array({values})"

    def _key_known(self, alias: str) -> str:
        """SQL: the row `alias` has a key that an accepted row of an earlier chunk holds."""
        matches = " OR ".join(
            f"(k.key_index = {index} AND k.value = {self._key_value(alias, columns)})"
            for index, columns in enumerate(self.keys)
        )
        return f"EXISTS (SELECT 1 FROM {self.ledger} k WHERE k.operation_id = %s AND ({matches}))"

    def write(
        self, batches: Iterable[Sequence], *, keep: Callable[[list], bool] | None = None
    ) -> list[tuple[int, str, str]]:
        """Write nothing, but return the row errors (line, reason, raw) the import would give
        the rows of these batches for the table's unique constraints. The accepted rows' keys are kept for the next
        chunks, unless `keep(refused)` says the chunk is left out (`strict`)."""
        connection.ensure_connection()
        with connection.wrap_database_errors, connection.cursor() as cursor:
            self._stage(cursor, batches)
            refused: list = []
            accepted_keys: list = []
            try:
                with transaction.atomic():
                    refused, accepted_keys = self._try_insert(cursor)
                    raise _Undo
            except _Undo:
                pass
            if accepted_keys and (keep is None or keep(refused)):
                cursor.executemany(
                    f"INSERT INTO {self.ledger} (operation_id, key_index, value, line) VALUES (%s, %s, %s, %s)",
                    [(self.operation_id, index, value, line) for index, value, line in accepted_keys],
                )
        return refused

    def _stage(self, cursor, batches) -> None:
        """The chunk's rows into the staging table (a temporary table of the connection)."""
        names = ", ".join(self.names)
        if connection.vendor == "postgresql":
            cursor.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS {self.check_stage} ON COMMIT DELETE ROWS AS"
                f" SELECT {names} FROM {self.table} WITH NO DATA"
            )
            cursor.execute(f"DELETE FROM {self.check_stage}")
            with connection.connection.cursor() as raw:
                self._copy(raw, self.check_stage, batches, [])
            if self.fixed_columns and not self.fixed_in_rows:
                assignments = ", ".join(f"{column} = %s" for column in self.fixed_columns)
                cursor.execute(f"UPDATE {self.check_stage} SET {assignments}", self.fixed_values)
            return
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {self.check_stage} AS SELECT {names} FROM {self.table} WHERE 0"
        )
        cursor.execute(f"DELETE FROM {self.check_stage}")
        marks = ", ".join(["%s"] * len(self.names))
        for batch in batches:
            if batch:
                cursor.executemany(f"INSERT INTO {self.check_stage} ({names}) VALUES ({marks})", batch)

    def _try_insert(self, cursor) -> tuple[list, list]:
        """Inside the savepoint: insert the staged rows whose keys no earlier chunk holds, as
        the import would; return the row errors of the rows left out, and the keys (index,
        value, line) of the rows the table took."""
        names = ", ".join(self.names)
        known = f" AND NOT {self._key_known('s')}" if self.keys else ""
        cursor.execute(
            f"INSERT INTO {self.table} ({names}) SELECT {names} FROM {self.check_stage} s"
            f" WHERE true{known} ORDER BY s.{self.line_column} ON CONFLICT DO NOTHING",
            [self.operation_id] if self.keys else [],
        )
        line, columns = self.line_column, ", ".join(f"s.{c}" for c in self.columns)
        cursor.execute(
            f"SELECT s.{line}, {columns} FROM {self.check_stage} s WHERE NOT EXISTS"
            f" (SELECT 1 FROM {self.table} t WHERE t.{self.op_column} = %s AND t.{line} = s.{line})"
            f" ORDER BY s.{line}",
            [self.operation_id],
        )
        skipped = cursor.fetchall()
        refused = [self._refused(row[0], dict(zip(self.plan.fields, row[1:], strict=True))) for row in skipped]
        accepted_keys = []
        for index, key in enumerate(self.keys):
            present = " AND ".join(f"t.{column} IS NOT NULL" for column in key)
            cursor.execute(
                f"SELECT {self._key_value('t', key)}, t.{line} FROM {self.table} t"
                f" WHERE t.{self.op_column} = %s AND {present}",
                [self.operation_id],
            )
            accepted_keys += [(index, value, found_line) for value, found_line in cursor.fetchall()]
        return refused, accepted_keys

    def _holder(self, index: int, key: Sequence[str], line: int, values: dict) -> tuple[int, int] | None:
        """The table's holder of the key (within the savepoint), else an earlier chunk's row."""
        found = super()._holder(index, key, line, values)
        if found is not None:
            return found
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT k.line FROM {self.check_stage} s JOIN {self.ledger} k ON k.operation_id = %s"
                f" AND k.key_index = %s AND k.value = {self._key_value('s', self.keys[index])}"
                f" WHERE s.{self.line_column} = %s",
                [self.operation_id, index, line],
            )
            earlier = cursor.fetchone()
        return None if earlier is None else (self.operation_id, earlier[0])

    def forget(self) -> None:
        """Drop the kept keys (the dry run is over, or terminated)."""
        DryRunKey.objects.filter(operation_id=self.operation_id).delete()
