"""The built-in operation type: import a CSV file into `UploadedRow`, chunk by chunk (SPEC §7).

Checkpoint: `position` is the byte offset after the last finished data row, `lines_finished`
and `lines_failed` count the data rows done (stored or rejected). A resume seeks to
`position` and goes on (I8). Line numbers count data rows: 1 is the first row after the
header; blank lines are skipped and not counted. Option: `strict` (fail at the first bad row).
"""

import io
import json
import math
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import BinaryIO

from django.conf import settings

from operations import rowstore, stop_requests, storage, targets
from operations.csv_reader import CsvProblem, TextCheck, read_header
from operations.csv_records import BLOCK_BYTES, BadRecord, CsvRecords
from operations.errors import BadInput, Conflict
from operations.models import Operation, RowError
from operations.operation_types import dry_run, upload_target
from operations.operation_types.base import Chunk, Job, OperationType, Progress
from operations.params import flag, integer
from operations.targets.store import TargetTable
from operations.tus import services as tus

RAW_TEXT_LIMIT = 500


def _limits() -> dict:
    """The CSV reader's bounds on one record, from the settings."""
    return {"field_limit": settings.LONG_TASK_CSV_FIELD_LIMIT, "line_limit": settings.LONG_TASK_CSV_LINE_LIMIT}


def _header_limits() -> dict:
    """The bounds of the header row, from the settings."""
    return {"max_columns": settings.LONG_TASK_CSV_MAX_COLUMNS, "max_bytes": settings.LONG_TASK_CSV_HEADER_BYTES}


def _strict(data: Mapping) -> dict:
    """`strict`, when the request gives it (at registration, on a start or a resume)."""
    return {"strict": flag(data, "strict")} if "strict" in data else {}


def _options_changed(op: Operation, data: Mapping) -> dict:
    """The fields a start or a resume saves for the options it gives."""
    changed = _strict(data)
    return {"options": {**op.options, **changed}} if changed else {}


def _arriving(data: Mapping, *, actor) -> dict:
    """`upload`: the resumable upload that will bring the file (one of the caller's, finished or
    not), so that the status shows its progress while the operation is registered."""
    reference = data.get("upload")
    if reference in (None, ""):
        return {}
    upload = tus.upload_get(upload_id=tus.upload_id_of(reference), user=actor.user)
    return {"upload": str(upload.pk)}


def _check_lines(op: Operation, data: Mapping) -> None:
    """The seed's `lines`: the client's idea of lines_finished must match the server's."""
    lines = data.get("lines")
    if lines in (None, ""):
        return
    lines = integer(lines, message="lines must be an integer")
    if lines != op.lines_finished:
        raise Conflict(f"lines is {lines} but the server has finished {op.lines_finished} lines")


class Upload(OperationType):
    """Checkpoint: `position` is the byte offset after the last finished data row,
    `lines_finished` and `lines_failed` count the data rows done; `total_lines` is set with
    the last chunk."""

    name = "Upload"
    option_names = frozenset({"strict", "target", "mapping", "dry_run", "upload"})

    def parse_options(self, data: Mapping, *, actor) -> dict:
        checking = {"dry_run": True} if flag(data, "dry_run") else {}
        return {**_strict(data), **upload_target.options(data), **checking, **_arriving(data, actor=actor)}

    def prepare_input(self, op: Operation, *, data: Mapping, files: Mapping) -> dict:
        _check_lines(op, data)
        options = _options_changed(op, data)
        upload = files.get("file")
        if upload is None:
            raise BadInput("A CSV file is required in the 'file' field (multipart/form-data)")
        if upload.size == 0:
            raise BadInput("The file is empty")
        if getattr(upload, "text_problem", ""):
            raise BadInput(upload.text_problem)
        name = storage.store_upload(upload, f"uploads/{op.pk}-{uuid.uuid4().hex}.csv")
        try:
            with storage.open_for_reading(name, block_size=storage.SMALL_BLOCK_BYTES) as stored:
                header = read_header(stored, **_limits(), **_header_limits())
            if op.options.get("target"):
                # The header must fit the target (400 naming every problem), before any work.
                target = targets.get(op.options["target"])
                strict = {**op.options, **options.get("options", {})}.get("strict", False)
                target.plan(header.columns, mapping=op.options.get("mapping"), strict=bool(strict))
        except CsvProblem as exc:
            storage.delete(name)
            raise BadInput(str(exc)) from None
        except BaseException:
            storage.delete(name)
            raise
        return {
            "file": name,
            "file_name": os.path.basename(upload.name or "").replace("\x00", "")[:255],
            "file_size": upload.size,
            "file_sha256": getattr(upload, "sha256", ""),
            "columns": header.columns,
            "position": header.end_offset,
            # Where the rows start, for the import that takes a dry run's file.
            **({"checkpoint": {"header_end": header.end_offset}} if op.options.get("dry_run") else {}),
            **options,
        }

    def check_resume(self, op: Operation, *, data: Mapping, files: Mapping) -> dict:
        _check_lines(op, data)
        upload = files.get("file")
        if upload is not None and getattr(upload, "sha256", None) != op.file_sha256:
            raise Conflict("The file differs from the one uploaded first")
        return _options_changed(op, data)

    def preview(self, data: bytes, *, complete: bool, max_rows: int, options: Mapping | None = None) -> dict:
        """The header and the first `max_rows` data rows of `data`, each with the verdict an
        import would give it (the worker's own reading, on a copy in memory), and with a
        `target` in `options`, which column fills which field and each row's conversion. A row
        cut off by the end of an incomplete `data` is left out. `header_bytes` and `rows_bytes`
        say how much of `data` the header and the rows shown took (to estimate a file's rows)."""
        if not complete:
            data = data[: data.rfind(b"\n") + 1]
        check = TextCheck()
        check.feed(data, final=True)
        if check.problem or not data.strip():
            raise BadInput(check.problem or "The file is empty")
        try:
            header = read_header(io.BytesIO(data), **_limits(), **_header_limits())
        except CsvProblem as exc:
            raise BadInput(str(exc)) from None
        # An operation that exists only here: nothing is saved or stored.
        op = Operation(columns=header.columns, position=header.end_offset, options={})
        job = UploadJob(op, open_input=lambda **_: io.BytesIO(data), row_tuples=True)
        chunk = job.read_chunk(max_rows=max_rows)
        chunk.prepare()  # all of it: no chunk time
        rows = {
            line: {"line": line, "values": list(json.loads(text).values()), "problem": ""}
            for batch in chunk.rows
            for _, line, text in batch
        }
        for error in chunk.rejected:
            rows[error.line_number] = {"line": error.line_number, "raw": error.raw, "problem": error.reason}
        job.close()
        shown = {
            "columns": header.columns,
            "rows": [rows[line] for line in sorted(rows)],
            "failed": len(chunk.rejected),
            "complete": complete and chunk.progress.finished,  # every row of the file is shown
            "header_bytes": header.end_offset,
            "rows_bytes": chunk.progress.checkpoint["position"] - header.end_offset,
        }
        if (options or {}).get("target"):
            shown.update(upload_target.preview(options, header.columns, shown["rows"]))
        return shown

    def import_refusal(self, op: Operation) -> str | None:
        return dry_run.import_refusal(op)

    def import_checked(self, op: Operation) -> tuple[dict, dict]:
        return dry_run.import_checked(op, header_limits={**_limits(), **_header_limits()})

    def hand_over_input(self, op: Operation, *, to: Operation) -> dict:
        return dry_run.hand_over(op, to=to)

    def status_fields(self, op: Operation) -> dict:
        return {"dry_run": dry_run.summary(op)} if op.options.get("dry_run") else {}

    def discard_input(self, fields: Mapping) -> None:
        if fields.get("file"):
            storage.delete(fields["file"])

    def percent_done(self, op: Operation) -> float | None:
        # Bytes are exact at every checkpoint; the number of rows is only known at the end.
        if not op.file_size:
            return None
        return min(100.0, 100.0 * op.position / op.file_size)

    def describe_checkpoint(self, op: Operation) -> str:
        return f"line {op.lines_finished:,}"

    def open(self, op: Operation) -> Job:
        return UploadJob(op)

    def _delete_lines(self, op: Operation, *, after: int, up_to: int | None = None) -> None:
        """Delete the operation's rows after < line <= up_to, in UploadedRow or its target's table."""
        planned = targets.plan_of(op)
        if planned is None:
            rowstore.delete_lines(operation_id=op.pk, after=after, up_to=up_to)
        else:
            TargetTable(*planned, op.pk).delete_lines(after=after, up_to=up_to)

    def rollback_done(self, op: Operation) -> bool:
        # A dry run wrote no rows: only its row errors and kept keys, which rollback_rest deletes.
        return bool(op.options.get("dry_run")) or op.rollback_position >= op.lines_finished

    def rollback_chunk(self, op: Operation, *, max_rows: int) -> int:
        up_to = min(op.rollback_position + max_rows, op.lines_finished)
        self._delete_lines(op, after=op.rollback_position, up_to=up_to)
        return up_to

    def rollback_rest(self, op: Operation) -> dict:
        # Every line up to the rollback checkpoint is deleted and committed; rows can only be
        # left after it (none are, since a terminating operation commits no chunk, but this is
        # the last word). A range, not "all of the operation's", which would scan dead rows.
        if op.options.get("dry_run"):
            upload_target.forget_keys(op)
        else:
            self._delete_lines(op, after=op.rollback_position)
        RowError.objects.filter(operation_id=op.pk).delete()
        return {"lines_finished": 0, "lines_failed": 0, "position": 0, "file": "", "checkpoint": {}}

    def delete_input(self, op: Operation) -> None:
        if op.file:
            storage.delete(op.file.name)


# The rows of a block go to the database in one batch: at most this many bytes of it as the
# rows' fixed part (the JSON keys, which a narrow row with long column names repeats).
BATCH_KEY_BYTES = 1024 * 1024


class UploadChunk(Chunk):
    """Data rows read as they are written: straight into COPY on PostgreSQL, or first into a
    list (`prepare`) where the write lock should be held for the inserts only. `rows` are
    batches of rows encoded by `rowstore.row_encoder`."""

    def __init__(self, job: "UploadJob", max_rows: int):
        super().__init__()
        self.first_line = job.lines_finished + 1
        # Where the chunk starts: the checkpoint it leaves if it must store nothing (a target
        # import failing under `strict`).
        state = job.records.state
        self.start = {"position": state.offset, "lines_finished": state.line, "lines_failed": job.lines_failed}
        self.rejected: list[RowError] = []
        self.unconverted: list[RowError] = []  # rows whose cells a target refused
        self.streamed = True  # read while it is written
        self.rows: Iterable[list] = job._read(self, max_rows)

    def prepare(self) -> None:
        self.streamed = False
        self.rows = list(self.rows)


class UploadJob(Job):
    stops_mid_chunk = True  # `_read` asks `check_chunk` for each block of rows

    def __init__(
        self,
        op: Operation,
        *,
        open_input: Callable[..., BinaryIO] | None = None,
        row_tuples: bool = False,
        block_bytes: int | None = None,
    ):
        """`open_input(block_size=..., read_ahead=...)` opens the file anew (default: the
        operation's stored file). `row_tuples`: the chunks' rows are Row tuples whatever the
        database (for a look at them rather than for `rowstore.write_rows`). `block_bytes`:
        the most the reading takes at once (default BLOCK_BYTES; 0: one record at a time)."""
        self.op_id = op.pk
        self.columns = list(op.columns or [])
        if len(self.columns) > settings.LONG_TASK_CSV_MAX_COLUMNS:
            # Stored before the limit (or before it was lowered): refused here as at upload.
            raise BadInput(
                f"The header has {len(self.columns)} columns; at most {settings.LONG_TASK_CSV_MAX_COLUMNS} are allowed"
            )
        # An import into a target's table converts and writes rows its own way; a dry run
        # stores row errors and totals only.
        self.dry_run = bool(op.options.get("dry_run"))
        self.verdicts = dry_run.Verdicts(op) if self.dry_run else None
        self.target = upload_target.TargetWriter(op, dry_run=self.dry_run) if op.options.get("target") else None
        if self.target is not None:
            self.encode = self.target.to_row
        else:
            self.encode = rowstore.row_encoder(op.pk, self.columns, tuples=row_tuples)
        self.lines_finished = op.lines_finished
        self.lines_failed = op.lines_failed
        file_name = op.file.name
        self._open = open_input or (lambda **options: storage.open_for_reading(file_name, **options))
        # From the checkpoint's byte offset on: nothing before it is read (I8), on S3 neither.
        # Read to the end: on S3 the next block is fetched while this one is parsed.
        self._stored = self._open(read_ahead=True)
        self._raw = None  # a second reader for the text of rejected rows, opened when needed
        keys = len(rowstore.json_object_encoder(self.columns)([""] * len(self.columns)))
        self.records = CsvRecords(
            self._stored,
            offset=op.position,
            line=op.lines_finished,
            width=len(self.columns),
            to_row=self.encode,
            raw_text=self._raw_text,
            strict=bool(op.options.get("strict")),
            block_bytes=BLOCK_BYTES if block_bytes is None else block_bytes,
            rows_a_block=max(1, BATCH_KEY_BYTES // keys),
            **_limits(),
        )

    def read_chunk(self, *, max_rows: int) -> UploadChunk:
        return UploadChunk(self, max_rows)

    def write_chunk(self, chunk: UploadChunk) -> None:
        refused: list[RowError] = []
        if self.target is not None:
            refused = self.target.write_chunk(chunk)  # reads the chunk, counting its bad rows
            self.lines_failed += len(refused)
        else:
            if self.dry_run:
                for _ in chunk.rows:  # read and checked, not stored
                    pass
            else:
                rowstore.write_rows(chunk.rows)
            if chunk.rejected:
                RowError.objects.bulk_create(chunk.rejected)
        if self.verdicts is not None:
            self.verdicts.count(chunk, [*chunk.rejected, *refused])
            if chunk.progress.finished and self.target is not None:
                self.target.table.forget()

    def _read(self, chunk: UploadChunk, max_rows: int) -> Iterator[list]:
        """Yield the chunk's rows in batches; keep its rejected ones; set its progress at the end."""
        # A chunk read while it is written (COPY) also stops once it has taken the chunk's time:
        # the rows were estimated from the chunk before, and a slow spell (a neighbour taking the
        # core) would otherwise make a long chunk, which a pause request waits for.
        deadline = time.monotonic() + stop_requests.chunk_seconds(self) if chunk.streamed else math.inf
        # Rows come faster at times: a chunk sized by time alone would then hold more of them
        # until it commits (a target's, all of them), and the worker's memory would follow.
        most_bytes = settings.LONG_TASK_CHUNK_BYTES
        for records in self.records.read(max_rows=max_rows, deadline=deadline, max_bytes=most_bytes):
            stop_requests.check_chunk()
            if records.__class__ is BadRecord:
                chunk.rejected.append(self._row_error(records))
            else:
                yield records.rows if self.target is None else self.target.rows(chunk, records)
        state = self.records.state
        chunk.units = state.line - self.lines_finished
        self.lines_finished = state.line
        self.lines_failed += len(chunk.rejected)
        checkpoint = {"position": state.offset, "lines_finished": state.line, "lines_failed": self.lines_failed}
        if state.finished:
            checkpoint["total_lines"] = state.line
        chunk.progress = Progress(checkpoint=checkpoint, finished=state.finished, error=state.error)

    def _row_error(self, bad: BadRecord) -> RowError:
        return RowError(operation_id=self.op_id, line_number=bad.line, reason=bad.reason[:255], raw=bad.raw)

    def _raw_text(self, start: int, end: int) -> str:
        """The bytes of a rejected row, read apart from the stream the reader iterates."""
        length = min(end - start, RAW_TEXT_LIMIT * 4)
        if self._raw is None:
            # Kept for the job: rows rejected close together cost one read of the store.
            self._raw = self._open(block_size=storage.SMALL_BLOCK_BYTES)
        self._raw.seek(start)
        text = self._raw.read(length).decode("utf-8", errors="replace")
        return text.rstrip("\r\n")[:RAW_TEXT_LIMIT]

    def close(self) -> None:
        self._stored.close()
        if self._raw is not None:
            self._raw.close()
        if self.target is not None:
            self.target.table.close()
