"""An Upload into a target's table (SPEC §13): the Upload's reading, chunks and checkpoint, with
each record converted to the target's typed columns as it is parsed, and the chunk written
into the target's table (targets/store.py) instead of UploadedRow.

Row errors: a record that does not parse (as for any Upload), a cell that does not convert,
and a row that a unique constraint of the table refuses; each is counted in `lines_failed`
and kept as a RowError. Under `strict` the first of them fails the operation: a bad record
as for any Upload (the rows before it stored), a bad cell or a refused row with the whole of
its chunk left out (the checkpoint stays before the chunk, which a resume reads again).
"""

import json
from collections.abc import Mapping

from operations import targets
from operations.errors import BadInput
from operations.models import Operation, RowError
from operations.operation_types.base import Progress
from operations.targets import convert
from operations.targets.store import TargetTable


def options(data: Mapping) -> dict:
    """The Upload's options `target` and `mapping` (a JSON object, or its text), checked."""
    name, mapping = data.get("target"), data.get("mapping")
    if name in (None, ""):
        if mapping not in (None, ""):
            raise BadInput("mapping goes with target: it maps the file's columns to the target's fields")
        return {}
    target = targets.get(name)
    if mapping in (None, ""):
        return {"target": target.name}
    if isinstance(mapping, str):
        try:
            mapping = json.loads(mapping)
        except ValueError:
            mapping = None
    return {"target": target.name, "mapping": target.check_mapping(mapping)}


class TargetWriter:
    """What an UploadJob into a target does its own way: each record to the target's typed
    columns (`to_row`, the CSV records' stage), the rows that did not convert taken out of a
    run (`rows`), and the chunk written into the target's table (`write_chunk`)."""

    def __init__(self, op: Operation):
        self.op_id = op.pk
        self.target, self.plan = targets.plan_of(op)
        self.strict = bool(op.options.get("strict"))
        self.table = TargetTable(self.target, self.plan, op.pk)
        by_field = {column.field: column for column in self.target.columns}
        converters = [
            convert.cell_converter(self.target.field(name), required=self.target.required(by_field[name]))
            for name in self.plan.fields
        ]
        self.converter = convert.RowConverter(
            converters,
            self.plan.indexes,
            self.plan.columns,
            operation_id=op.pk,
            fixed=self.table.fixed_values,
            prefix=self.table.row_prefix,
            suffix=self.table.row_suffix,
        )
        self.to_row = self.converter.to_row

    def _row_error(self, line: int, reason: str, raw: str) -> RowError:
        return RowError(operation_id=self.op_id, line_number=line, reason=reason[:255], raw=raw)

    def rows(self, chunk, records) -> list:
        """The rows of a run of records to write: those that converted. The others become the
        chunk's row errors."""
        errors = self.converter.errors
        if not errors:
            return records.rows
        bad = [self._row_error(*error) for error in errors]
        errors.clear()
        chunk.unconverted += bad
        chunk.rejected += bad
        return [row for row in records.rows if row is not None]

    def write_chunk(self, chunk) -> int:
        """Write the chunk's rows and row errors, and set its progress; return how many rows
        the table refused (row errors beyond those of the reading)."""
        keep = (lambda refused: not (refused or chunk.unconverted)) if self.strict else None
        refused = [self._row_error(*error) for error in self.table.write(chunk.rows, keep=keep)]
        progress = chunk.progress  # set once the rows were read
        if self.strict and (refused or chunk.unconverted):
            first = min([*refused, *chunk.unconverted], key=lambda error: error.line_number)
            chunk.progress = Progress(checkpoint=chunk.start, error=f"line {first.line_number}, {first.reason}")
            return 0
        if refused:
            checkpoint = {**progress.checkpoint, "lines_failed": progress.checkpoint["lines_failed"] + len(refused)}
            chunk.progress = Progress(checkpoint=checkpoint, finished=progress.finished, error=progress.error)
        if chunk.rejected or refused:
            RowError.objects.bulk_create(chunk.rejected + refused)
        return len(refused)
