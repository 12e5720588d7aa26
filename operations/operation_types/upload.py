"""The built-in operation type: import a CSV file into `UploadedRow`, chunk by chunk (SPEC §7).

Checkpoint: `position` is the byte offset after the last finished data row, `lines_finished`
and `lines_failed` count the data rows done (stored or rejected). A resume seeks to
`position` and goes on (I8). Line numbers count data rows: 1 is the first row after the
header; blank lines are skipped and not counted.
"""

import csv
import math
import os
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from typing import BinaryIO

from django.conf import settings
from django.core.files.storage import default_storage

from operations import rowstore
from operations.api.parsing import flag, integer
from operations.csv_reader import CsvProblem, RecordReader, read_header, set_field_limit
from operations.errors import BadInput, Conflict, TooLarge
from operations.models import Operation, RowError
from operations.operation_types.base import Chunk, Job, OperationType, Progress

RAW_TEXT_LIMIT = 500


def _binary_stream(stored) -> BinaryIO:
    """The underlying binary file of a storage File (fast line iteration), or the File itself."""
    return getattr(stored, "file", stored)


def _options_changed(op: Operation, data: Mapping) -> dict:
    """`strict`, when the request gives it (on a start or a resume): the fields to save."""
    if "strict" not in data:
        return {}
    return {"options": {**op.options, "strict": flag(data, "strict")}}


def _check_lines(op: Operation, data: Mapping) -> None:
    """The seed's `lines`: the client's idea of lines_finished must match the server's."""
    lines = data.get("lines")
    if lines in (None, ""):
        return
    lines = integer(lines, message="lines must be an integer")
    if lines != op.lines_finished:
        raise Conflict(f"lines is {lines} but the server has finished {op.lines_finished} lines")


class Upload(OperationType):
    name = "Upload"

    def prepare_input(self, op: Operation, *, data: Mapping, files: Mapping) -> dict:
        _check_lines(op, data)
        options = _options_changed(op, data)
        upload = files.get("file")
        if upload is None:
            raise BadInput("A CSV file is required in the 'file' field (multipart/form-data)")
        if upload.size == 0:
            raise BadInput("The file is empty")
        if upload.size > settings.LONG_TASK_MAX_UPLOAD_BYTES:
            raise TooLarge(f"The file is larger than {settings.LONG_TASK_MAX_UPLOAD_BYTES} bytes")
        if getattr(upload, "text_problem", ""):
            raise BadInput(upload.text_problem)
        name = default_storage.save(f"uploads/{op.pk}-{uuid.uuid4().hex}.csv", upload)
        set_field_limit(settings.LONG_TASK_CSV_FIELD_LIMIT)
        try:
            with default_storage.open(name, "rb") as stored:
                header = read_header(_binary_stream(stored), line_limit=settings.LONG_TASK_CSV_LINE_LIMIT)
        except CsvProblem as exc:
            default_storage.delete(name)
            raise BadInput(str(exc)) from None
        return {
            "file": name,
            "file_name": os.path.basename(upload.name or "")[:255],
            "file_size": upload.size,
            "file_sha256": getattr(upload, "sha256", ""),
            "columns": header.columns,
            "position": header.end_offset,
            **options,
        }

    def check_resume(self, op: Operation, *, data: Mapping, files: Mapping) -> dict:
        _check_lines(op, data)
        upload = files.get("file")
        if upload is not None and getattr(upload, "sha256", None) != op.file_sha256:
            raise Conflict("The file differs from the one uploaded first")
        return _options_changed(op, data)

    def discard_input(self, fields: Mapping) -> None:
        if fields.get("file"):
            default_storage.delete(fields["file"])

    def percent_done(self, op: Operation) -> float | None:
        # Bytes are exact at every checkpoint; the number of rows is only known at the end.
        if not op.file_size:
            return None
        return min(100.0, 100.0 * op.position / op.file_size)

    def open(self, op: Operation) -> Job:
        return UploadJob(op)

    def rollback_chunk(self, op: Operation, *, max_rows: int) -> int:
        up_to = min(op.rollback_position + max_rows, op.lines_finished)
        rowstore.delete_lines(operation_id=op.pk, after=op.rollback_position, up_to=up_to)
        return up_to

    def rollback_rest(self, op: Operation) -> None:
        # Every line up to the rollback checkpoint is deleted and committed; rows can only be
        # left after it (none are, since a terminating operation commits no chunk, but this is
        # the last word). A range, not "all of the operation's", which would scan dead rows.
        rowstore.delete_lines(operation_id=op.pk, after=op.rollback_position)
        RowError.objects.filter(operation_id=op.pk).delete()

    def delete_input(self, op: Operation) -> None:
        if op.file:
            default_storage.delete(op.file.name)


class UploadChunk(Chunk):
    """Data rows read as they are written: straight into COPY on PostgreSQL, or first into a
    list (`prepare`) where the write lock should be held for the inserts only."""

    def __init__(self, job: "UploadJob", max_rows: int):
        super().__init__()
        self.first_line = job.lines_finished + 1
        self.rejected: list[RowError] = []
        self.streamed = True  # read while it is written
        self.rows: Iterable[rowstore.Row] = job._read(self, max_rows)

    def prepare(self) -> None:
        self.streamed = False
        self.rows = list(self.rows)


class UploadJob(Job):
    def __init__(self, op: Operation):
        set_field_limit(settings.LONG_TASK_CSV_FIELD_LIMIT)
        self.op_id = op.pk
        self.strict = bool(op.options.get("strict"))
        self.columns = list(op.columns or [])
        self.encode = rowstore.json_object_encoder(self.columns)
        self.lines_finished = op.lines_finished
        self.lines_failed = op.lines_failed
        self._file_name = op.file.name
        self._stored = default_storage.open(self._file_name, "rb")
        self.reader = RecordReader(
            _binary_stream(self._stored), offset=op.position, line_limit=settings.LONG_TASK_CSV_LINE_LIMIT
        )

    def read_chunk(self, *, max_rows: int) -> UploadChunk:
        return UploadChunk(self, max_rows)

    def write_chunk(self, chunk: UploadChunk) -> None:
        rowstore.insert_rows(chunk.rows)
        if chunk.rejected:
            RowError.objects.bulk_create(chunk.rejected)

    def _read(self, chunk: UploadChunk, max_rows: int) -> Iterator[rowstore.Row]:
        """Yield the chunk's accepted rows; keep its rejected ones; set its progress at the end."""
        reader, encode, op_id, width = self.reader, self.encode, self.op_id, len(self.columns)
        records = reader.records
        line = self.lines_finished
        units = 0
        error = ""
        finished = False
        # The offset after the last record taken into this chunk, which is also where the next
        # one starts. A strict failure stops before the bad row, so the checkpoint excludes it.
        position = reader.offset
        # A chunk read while it is written (COPY) also stops once it has taken the chunk's time:
        # the rows were estimated from the chunk before, and a slow spell (a neighbour taking the
        # core) would otherwise make a long chunk, which a pause request waits for.
        deadline = time.monotonic() + settings.LONG_TASK_CHUNK_SECONDS if chunk.streamed else math.inf
        while units < max_rows:
            try:
                fields = next(records)
            except StopIteration:
                finished = True
                break
            except csv.Error as exc:
                reason = f"unreadable row: {reader.problem(exc)}"
            else:
                if reader.overlong:
                    reason = f"unreadable row: {reader.problem()}"
                elif not fields:  # blank line
                    position = reader.offset
                    continue
                elif len(fields) == width:
                    line += 1
                    units += 1
                    position = reader.offset
                    yield (op_id, line, encode(fields))
                    if not units & 255 and time.monotonic() > deadline:
                        break
                    continue
                else:
                    reason = f"expected {width} fields, found {len(fields)}"
            if self.strict:
                error = f"line {line + 1}: {reason}"
                break
            line += 1
            units += 1
            chunk.rejected.append(
                RowError(
                    operation_id=op_id,
                    line_number=line,
                    reason=reason[:255],
                    raw=self._raw_text(position, reader.offset),
                )
            )
            position = reader.offset
        self.lines_finished = line
        self.lines_failed += len(chunk.rejected)
        chunk.units = units
        chunk.progress = Progress(
            position=position,
            lines_finished=line,
            lines_failed=self.lines_failed,
            finished=finished,
            error=error,
        )

    def _raw_text(self, start: int, end: int) -> str:
        """The bytes of a rejected row, read apart from the stream the reader iterates."""
        length = min(end - start, RAW_TEXT_LIMIT * 4)
        with default_storage.open(self._file_name, "rb") as stored:
            stored.seek(start)
            text = stored.read(length).decode("utf-8", errors="replace")
        return text.rstrip("\r\n")[:RAW_TEXT_LIMIT]

    def close(self) -> None:
        self._stored.close()
