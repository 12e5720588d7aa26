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
from operations.operation_types.upload import UploadChunk, UploadJob
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


class TargetChunk(UploadChunk):
    def __init__(self, job: "TargetUploadJob", max_rows: int):
        # Where the chunk starts: where a strict failure inside it leaves the checkpoint.
        state = job.records.state
        self.start = {"position": state.offset, "lines_finished": state.line, "lines_failed": job.lines_failed}
        self.unconverted: list[RowError] = []
        super().__init__(job, max_rows)


class TargetUploadJob(UploadJob):
    def __init__(self, op: Operation, **kwargs):
        self.target, self.plan = targets.plan_of(op)
        self.strict = bool(op.options.get("strict"))
        self.table = TargetTable(self.target, self.plan, op.pk)
        super().__init__(op, **kwargs)

    def _row_encoder(self, op: Operation, *, row_tuples: bool):
        converters = [
            convert.cell_converter(self.target.field(name), required=self.target.required(column))
            for name, column in zip(self.plan.fields, self._columns_of_plan(), strict=True)
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
        return self.converter.to_row

    def _columns_of_plan(self):
        by_field = {column.field: column for column in self.target.columns}
        return [by_field[name] for name in self.plan.fields]

    def _rows(self, chunk: TargetChunk, records) -> list:
        errors = self.converter.errors
        if not errors:
            return records.rows
        bad = [
            RowError(operation_id=self.op_id, line_number=line, reason=reason[:255], raw=raw)
            for line, reason, raw in errors
        ]
        errors.clear()
        chunk.unconverted += bad
        chunk.rejected += bad
        return [row for row in records.rows if row is not None]

    def read_chunk(self, *, max_rows: int) -> TargetChunk:
        return TargetChunk(self, max_rows)

    def write_chunk(self, chunk: TargetChunk) -> None:
        strict = self.strict
        refused = self.table.write(
            chunk.rows, keep=(lambda refused: not (refused or chunk.unconverted)) if strict else None
        )
        progress = chunk.progress
        refused_errors = [
            RowError(operation_id=self.op_id, line_number=line, reason=reason[:255], raw=raw)
            for line, reason, raw in refused
        ]
        if strict and (refused_errors or chunk.unconverted):
            first = min([*refused_errors, *chunk.unconverted], key=lambda error: error.line_number)
            chunk.progress = Progress(checkpoint=chunk.start, error=f"line {first.line_number}, {first.reason}")
            return
        if refused_errors:
            self.lines_failed += len(refused_errors)
            checkpoint = {**progress.checkpoint, "lines_failed": self.lines_failed}
            chunk.progress = Progress(checkpoint=checkpoint, finished=progress.finished, error=progress.error)
        errors = chunk.rejected + refused_errors
        if errors:
            RowError.objects.bulk_create(errors)
