"""Export: the rows an Upload operation imported, all or those matching a filter, written to a
CSV file in the file storage, in line order under the original header, chunk by chunk.

Register with `op_type=Export`, `source=<op_id of a completed Upload>` and optionally
`filter={"column": "value", ...}` (rows whose columns equal all the values), start it with
`/upload/` or `/api/operations/{id}/start/` (no file), download the result at
`/api/operations/{id}/download/` once completed.

Each chunk exports a range of the source's line numbers into a part file of its own, named
afresh for every attempt, and the checkpoint lists the committed parts; the last chunk joins
them into the result file. So a chunk that rolls back (a pause, a kill, a lost lease) leaves
at most a part that no checkpoint names, never a half-written result, and a worker that lost
its lease can never write over a committed part: the result is byte for byte the same however
often the export was interrupted. Parts go through operations/storage/ (Django's storage API;
on S3 the join is a multipart upload, one part in memory), so any backend works.

Checkpoint: `checkpoint["last_line"]` (source lines done), `checkpoint["parts"]`,
`lines_finished` (rows written), `position` (bytes written, header included).
"""

import io
import json
import uuid
from collections.abc import Mapping

from django.db import transaction

from operations import rowstore, storage, targets
from operations.errors import BadInput, Conflict
from operations.models import Operation
from operations.operation_types.base import Chunk, Job, OperationType, Progress
from operations.params import positive_id

SOURCE_TYPE = "Upload"


def _parts_dir(op_id: int) -> str:
    return f"exports/{op_id}/"


def _source(source_id: int, *, user) -> Operation:
    """The source operation, if the exporting user may see it (else it does not exist)."""
    source = Operation.objects.filter(op_type=SOURCE_TYPE).visible_to(user).filter(pk=source_id).first()
    if source is None:
        raise BadInput(f"source {source_id} is not an Upload operation you can see")
    return source


def _match(data: Mapping) -> dict:
    """The `filter` option: a JSON object of column names to the values they must equal."""
    value = data.get("filter")
    if value in (None, ""):
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            value = None
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise BadInput('filter must be a JSON object of column names to values, e.g. {"city": "Paris"}')
    return value


def _columns(source: Operation) -> list[str] | None:
    """The header of the source's rows: the mapped header of an import into a target."""
    imported = targets.imported_rows(source)
    return source.columns if imported is None else imported.header


class Export(OperationType):
    name = "Export"
    option_names = frozenset({"source", "filter"})

    def parse_options(self, data: Mapping, *, actor) -> dict:
        source = _source(positive_id(data, "source"), user=actor.user)
        match = _match(data)
        columns = _columns(source)
        unknown = [name for name in match if name not in (columns or [])]
        if columns is not None and unknown:
            raise BadInput(f"filter names columns the source does not have: {', '.join(unknown)}")
        return {"source": source.pk, "filter": match}

    def prepare_input(self, op: Operation, *, data: Mapping, files: Mapping) -> dict:
        if files:
            raise BadInput("An Export takes no file: it reads the rows of its source operation")
        source = _source(op.options["source"], user=op.owner)
        if source.state != Operation.State.COMPLETED:
            raise Conflict(f"The source operation {source.pk} is {source.state}: an Export needs a completed Upload")
        return {
            "columns": _columns(source),
            "file_name": f"export-{op.pk}.csv",
            "position": 0,
            "lines_finished": 0,
            "checkpoint": {"last_line": 0, "source_lines": source.total_lines or 0, "parts": []},
        }

    def percent_done(self, op: Operation) -> float | None:
        total = op.checkpoint.get("source_lines")
        return 100.0 * op.checkpoint["last_line"] / total if total else None

    def download_refusal(self, op: Operation) -> str:
        if op.state != Operation.State.COMPLETED:
            return f"The export is {op.state}: its file can be downloaded once it has completed"
        return super().download_refusal(op)

    def describe_checkpoint(self, op: Operation) -> str:
        return f"source line {op.checkpoint.get('last_line', 0):,}"

    def open(self, op: Operation) -> Job:
        return ExportJob(op)

    def rollback_done(self, op: Operation) -> bool:
        return True  # it wrote files only, which delete_input removes

    def rollback_chunk(self, op: Operation, *, max_rows: int) -> int:
        return op.rollback_position

    def rollback_rest(self, op: Operation) -> dict:
        return {"lines_finished": 0, "position": 0, "file": "", "checkpoint": {}}

    def delete_input(self, op: Operation) -> None:
        if op.file:
            storage.delete(op.file.name)
        _delete_parts(op.pk)


def _delete_parts(op_id: int) -> None:
    """Every part of the export, committed or not (a killed attempt may have left one)."""
    directory = _parts_dir(op_id)
    for name in storage.listdir(directory):
        storage.delete(directory + name)


class ExportChunk(Chunk):
    def __init__(self, after: int, up_to: int):
        super().__init__()
        self.after, self.up_to = after, up_to
        self.data: bytes | None = None
        self.rows = 0

    def read(self, job: "ExportJob") -> None:
        if self.data is not None:
            return
        if job.imported is not None:
            self.data, self.rows = job.imported.export_csv(after=self.after, up_to=self.up_to, match=job.match)
            return
        self.data, self.rows = rowstore.export_csv(
            operation_id=job.source_id, after=self.after, up_to=self.up_to, columns=job.columns, match=job.match
        )


class ExportJob(Job):
    def __init__(self, op: Operation):
        self.op_id = op.pk
        self.source_id = op.options["source"]
        # The rows of an import into a target are read from the target's table, typed.
        self.imported = targets.imported_rows(Operation.objects.get(pk=self.source_id))
        self.match = op.options.get("filter") or {}
        self.columns = list(op.columns or [])
        self.source_lines = op.checkpoint["source_lines"]
        self.last_line = op.checkpoint["last_line"]
        self.parts = list(op.checkpoint["parts"])
        self.rows = op.lines_finished
        self.position = op.position

    def read_chunk(self, *, max_rows: int) -> ExportChunk:
        chunk = ExportChunk(self.last_line, min(self.last_line + max_rows, self.source_lines))
        chunk.prepare = lambda: chunk.read(self)  # SQLite: read before the write lock
        return chunk

    def write_chunk(self, chunk: ExportChunk) -> None:
        chunk.read(self)
        data = chunk.data if self.position else rowstore.csv_header(self.columns) + chunk.data
        parts = self.parts
        if data:
            name = f"{_parts_dir(self.op_id)}{chunk.up_to:012d}-{uuid.uuid4().hex}.part"
            parts = [*parts, storage.save(name, data)]
        finished = chunk.up_to >= self.source_lines
        checkpoint = {
            "position": self.position + len(data),
            "lines_finished": self.rows + chunk.rows,
            "checkpoint": {"last_line": chunk.up_to, "source_lines": self.source_lines, "parts": parts},
        }
        if finished:
            checkpoint.update(self._join(parts, checkpoint["position"]), total_lines=checkpoint["lines_finished"])
            transaction.on_commit(lambda: _delete_parts(self.op_id))
        chunk.units = max(chunk.up_to - chunk.after, 1)
        chunk.progress = Progress(checkpoint=checkpoint, finished=finished)
        # The job moves on only if the chunk commits; the worker opens a new job otherwise.
        self.parts, self.last_line = parts, chunk.up_to
        self.rows, self.position = checkpoint["lines_finished"], checkpoint["position"]

    def _join(self, parts: list[str], size: int) -> dict:
        """The result file, from the committed parts in order: the fields that name it."""
        name = storage.save(f"exports/{self.op_id}-{uuid.uuid4().hex}.csv", PartsReader(parts))
        return {"file": name, "file_size": size}


class PartsReader(io.RawIOBase):
    """The parts, read one after another as one stream (memory: one read's worth)."""

    def __init__(self, parts: list[str]):
        self._parts = iter(parts)
        self._current = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while True:
            if self._current is None:
                name = next(self._parts, None)
                if name is None:
                    return 0
                self._current = storage.open_for_reading(name, read_ahead=True)  # each read to its end
            data = self._current.read(len(buffer))
            if data:
                buffer[: len(data)] = data
                return len(data)
            self._current.close()
            self._current = None
