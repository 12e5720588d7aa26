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

from django.db import connection

from operations import targets
from operations.errors import BadInput
from operations.models import DryRunKey, Operation, RowError
from operations.operation_types.base import Progress
from operations.targets import convert
from operations.targets.declare import normalized
from operations.targets.dry_run import DryRunTable
from operations.targets.rows import RowConverter
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

    def __init__(self, op: Operation, *, dry_run: bool = False):
        """`dry_run`: rows are checked against the table as the import would, not written."""
        self.op_id = op.pk
        self.target, self.plan = targets.plan_of(op)
        self.strict = bool(op.options.get("strict"))
        self.table = (DryRunTable if dry_run else TargetTable)(self.target, self.plan, op.pk)
        by_field = {column.field: column for column in self.target.columns}
        converters = [
            convert.cell_converter(self.target.field(name), required=self.target.required(by_field[name]))
            for name in self.plan.fields
        ]
        self.converter = RowConverter(
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

    def write_chunk(self, chunk) -> list[RowError]:
        """Write the chunk's rows and row errors, and set its progress; return the row errors
        of the rows the table refused (beyond those of the reading)."""
        keep = (lambda refused: not (refused or chunk.unconverted)) if self.strict else None
        refused = [self._row_error(*error) for error in self.table.write(chunk.rows, keep=keep)]
        progress = chunk.progress  # set once the rows were read
        if self.strict and (refused or chunk.unconverted):
            first = min([*refused, *chunk.unconverted], key=lambda error: error.line_number)
            chunk.progress = Progress(checkpoint=chunk.start, error=f"line {first.line_number}, {first.reason}")
            return []
        if refused:
            checkpoint = {**progress.checkpoint, "lines_failed": progress.checkpoint["lines_failed"] + len(refused)}
            chunk.progress = Progress(checkpoint=checkpoint, finished=progress.finished, error=progress.error)
        if chunk.rejected or refused:
            _save_row_errors(chunk.rejected + refused)
        return refused


def _save_row_errors(errors: list[RowError]) -> None:
    """RowError.objects.bulk_create written out through the driver (COPY on PostgreSQL, where an
    `executemany` would be a statement a row): nearly every chunk has some."""
    meta, quote = RowError._meta, connection.ops.quote_name
    columns = ", ".join(quote(meta.get_field(name).column) for name in ("operation", "line_number", "reason", "raw"))
    rows = [(error.operation_id, error.line_number, error.reason, error.raw) for error in errors]
    if connection.vendor == "postgresql":
        copy_sql = f"COPY {quote(meta.db_table)} ({columns}) FROM STDIN"
        with connection.wrap_database_errors, connection.connection.cursor() as cursor, cursor.copy(copy_sql) as copy:
            for row in rows:
                copy.write_row(row)
        return
    with connection.cursor() as cursor:
        cursor.executemany(f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES (%s, %s, %s, %s)", rows)


def forget_keys(op: Operation) -> None:
    """Drop what a dry run into a target kept of the rows it accepted (it is terminated)."""
    DryRunKey.objects.filter(operation_id=op.pk).delete()


def preview(options: Mapping, header: list[str], rows: list[dict]) -> dict:
    """A file's first rows as an import into the target of `options` would take them: which
    column fills which field (and what the header lacks), and each row's cells converted, its
    `problem` the row error a bad cell makes. Unique keys are not looked up (nothing is read
    from the table): the dry run of the whole file does that."""
    target = targets.get(options["target"])
    mapping = options.get("mapping")
    try:
        plan = target.plan(header, mapping=mapping, strict=bool(options.get("strict")))
        problem = ""
    except BadInput as exc:
        plan, problem = None, exc.message
    fed = dict(zip(plan.fields, plan.columns, strict=True)) if plan else _guessed_columns(target, header, mapping)
    fields = [{"field": c.field, "column": fed.get(c.field), "required": target.required(c)} for c in target.columns]
    shown = {
        "target": target.name,
        "fields": fields,
        "unused_columns": [name for name in header if name not in fed.values()],
        "header_problem": problem,
    }
    if plan is None:  # the upload would be refused: no row is checked
        for row in rows:
            if not row["problem"]:
                row.update(
                    problem="not checked: the header does not fit the target", raw=convert.raw_line(row["values"])
                )
        return {**shown, "failed": len(rows)}
    converters = [
        convert.cell_converter(target.field(name), required=target.required(c))
        for name, c in zip(plan.fields, _columns_of(target, plan.fields), strict=True)
    ]
    failed = 0
    for row in rows:
        if not row["problem"]:
            values = row["values"]
            reasons = [
                f"{column}: {convert.quoted(values[index])} {reason}"
                for check, index, column in zip(converters, plan.indexes, plan.columns, strict=True)
                if (reason := convert.explain(check, values[index]))
            ]
            if reasons:
                row.update(problem="; ".join(reasons), raw=convert.raw_line(values))
        failed += bool(row["problem"])
    return {**shown, "failed": failed}


def _columns_of(target, fields) -> list:
    by_field = {column.field: column for column in target.columns}
    return [by_field[name] for name in fields]


def _guessed_columns(target, header: list[str], mapping: dict | None) -> dict[str, str]:
    """Field -> column as far as a header that does not fit lets one tell (for the preview)."""
    given = {normalized(k): v for k, v in (mapping or {}).items()}
    defaults = {normalized(c.column or c.field): c.field for c in target.columns}
    fed: dict[str, str] = {}
    for name in header:
        key = normalized(name)
        field = given[key] if key in given else defaults.get(key)
        if field is not None and field not in fed:
            fed[field] = name
    return fed
