"""The Upload type run by the real worker loop, in-process (SPEC §7, I1, I3, I8).

Each test starts an upload through the API, then calls `worker.work_operation` right here: it
claims the operation and imports the whole file, chunk by chunk. `ChunkSizer` is replaced by a
fixed size so that small files take many chunks, and its `observe` (called after each chunk has
committed, outside any transaction) is where a test acts "between two chunks", as another
request would.

Expected rows, row errors and byte offsets come from `CsvFile`, which writes every line on its
own and so knows them independently of the reader.
"""

import csv
import io
import math
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from operations import rowstore, worker
from operations.csv_reader import BOM
from operations.models import Operation, RowError, UploadedRow
from operations.operation_types import upload
from operations.operation_types.upload import Upload
from tests.conftest import HEADER as CONFTEST_HEADER
from tests.conftest import csv_bytes, stored_lines, upload_file
from tests.support import other_session

S = Operation.State
HEADER = ["name", "note", "city", "n"]


# --- expected results ---------------------------------------------------------------------------


class CsvFile:
    """A CSV file built line by line, with what an import of it must store."""

    def __init__(self, *, header: list[str] = HEADER, terminator: str = "\n", bom: bool = False):
        self.header, self.terminator = header, terminator
        self.parts = [(BOM if bom else b"") + self._line(header)]
        self.lines = 0  # data rows so far (accepted or rejected), the last line number
        self.rows: list[tuple[int, dict]] = []
        self.errors: list[tuple[int, str, str]] = []
        self.ends = {0: self.size}  # line number -> byte offset just past that row

    def _line(self, fields) -> bytes:
        out = io.StringIO()
        csv.writer(out, lineterminator=self.terminator).writerow(fields)
        return out.getvalue().encode()

    @property
    def size(self) -> int:
        return sum(map(len, self.parts))

    def content(self) -> bytes:
        return b"".join(self.parts)

    def row(self, *fields: str) -> "CsvFile":
        assert len(fields) == len(self.header)
        self.lines += 1
        self.parts.append(self._line(fields))
        self.rows.append((self.lines, dict(zip(self.header, fields, strict=True))))
        self.ends[self.lines] = self.size
        return self

    def bad(self, *fields: str) -> "CsvFile":
        assert len(fields) != len(self.header)
        self.lines += 1
        line = self._line(fields)
        self.parts.append(line)
        reason = f"expected {len(self.header)} fields, found {len(fields)}"
        self.errors.append((self.lines, reason, line.decode().rstrip("\r\n")[:500]))
        self.ends[self.lines] = self.size
        return self

    def blank(self, count: int = 1) -> "CsvFile":
        self.parts.append(self.terminator.encode() * count)
        return self

    def without_final_newline(self) -> "CsvFile":
        assert self.parts[-1].endswith(self.terminator.encode()) and self.ends[self.lines] == self.size
        self.parts[-1] = self.parts[-1][: -len(self.terminator)]
        self.ends[self.lines] = self.size
        return self


def rich_csv(*, terminator: str = "\n", bom: bool = False) -> CsvFile:
    """Every case of SPEC §7 in one file, 60 data lines of which 9 are rejected."""
    f = CsvFile(terminator=terminator, bom=bom)
    f.blank()  # right after the header
    f.row("plain", "text", "Paris", "1")
    f.row("comma, inside", 'quote " inside', "", "2")
    f.row("multi\nline", "crlf\r\ninside", "Zürich", "3")
    f.bad("too", "few", "fields")
    f.row("😀 emoji", "中文", "ünïcödé", "")
    f.blank(3)
    f.bad("one", "too", "many", "fields", "here")
    f.row("", "", "", "")
    f.bad('multi\nline "bad"', "row")
    f.bad(" ")
    f.row('"', '""', ",", "\n")
    for n in range(10, 59):
        if n % 11 == 0:
            f.bad(f"bad{n}", "x")
        else:
            f.row(f"name{n}", f"note {n}, with comma", f"line\nbreak {n}" if n % 5 == 0 else f"City {n}", str(n))
        if n % 7 == 0:
            f.blank()
    f.row("last", "row", "without", "newline").without_final_newline()
    assert (f.lines, len(f.errors)) == (60, 9)
    return f


# --- the worker, in-process ---------------------------------------------------------------------


def run(op_id: int) -> Operation:
    worker.work_operation(op_id)
    return Operation.objects.get(pk=op_id)


def rows_of(op_id: int) -> list[tuple[int, dict]]:
    return list(
        UploadedRow.objects.filter(operation_id=op_id).order_by("line_number").values_list("line_number", "data")
    )


def errors_of(op_id: int) -> list[tuple[int, str, str]]:
    return list(
        RowError.objects.filter(operation_id=op_id).order_by("line_number").values_list("line_number", "reason", "raw")
    )


def stored_path(op_id: int) -> Path:
    op = Operation.objects.get(pk=op_id)
    assert op.file.name
    return Path(settings.MEDIA_ROOT) / op.file.name


def status(api, op_id: int) -> dict:
    response = api.post("/get_status/", {"op_id": op_id}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def assert_imported(api, op_id: int, f: CsvFile) -> None:
    op = Operation.objects.get(pk=op_id)
    assert (op.state, op.error) == (S.COMPLETED, "")
    assert rows_of(op_id) == f.rows
    assert errors_of(op_id) == f.errors
    assert (op.lines_finished, op.lines_failed, op.total_lines) == (f.lines, len(f.errors), f.lines)
    assert op.position == f.size
    body = status(api, op_id)
    assert (body["is_finished"], body["lines_finished"], body["lines_failed"]) == (True, f.lines, len(f.errors))


def pause_after_every_chunk(api, chunks, op_id: int) -> None:
    """Ask for a pause after each committed chunk, whenever the operation runs."""

    def pause(count: int) -> None:
        if Operation.objects.get(pk=op_id).state == S.RUNNING:
            assert request(api, "pause", op_id)["state"] == S.PAUSING

    chunks.after_chunk = pause


def overwrite_done_part(op: Operation) -> None:
    """Replace the bytes before the checkpoint with garbage: a resume must not read them (I8).

    Invalid UTF-8 everywhere, header included, so any re-read fails the import loudly."""
    path = stored_path(op.pk)
    size = path.stat().st_size
    assert 0 < op.position <= size
    with open(path, "r+b") as stored:
        stored.write(b"\xff" * op.position)
    assert path.stat().st_size == size


def resume(api, op_id: int, how: str, content: bytes) -> None:
    if how == "resume":
        response = api.post("/resume/", {"op_id": op_id}, format="json")
    else:  # the seed's way: upload the same file again, with the client's idea of lines done
        lines = Operation.objects.get(pk=op_id).lines_finished
        response = api.post("/upload/", {"op_id": op_id, "file": upload_file(content), "lines": lines})
    assert response.status_code == 202, response.content
    assert response.json()["state"] == S.QUEUED


def request(api, verb: str, op_id: int, **body) -> dict:
    response = api.post(f"/{verb}/", {"op_id": op_id, **body}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


# --- §7: what is stored ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("bom", [False, True], ids=["no BOM", "BOM"])
@pytest.mark.parametrize("terminator", ["\n", "\r\n"], ids=["LF", "CRLF"])
def test_import_follows_the_csv_rules(api, start_upload, chunks, terminator, bom):
    f = rich_csv(terminator=terminator, bom=bom)
    op_id = start_upload(f.content())
    assert Operation.objects.get(pk=op_id).columns == HEADER  # no BOM in the first name
    run(op_id)
    assert_imported(api, op_id, f)
    assert chunks.count >= math.ceil(f.lines / chunks.size)


@pytest.mark.django_db(transaction=True)
def test_row_errors_keep_a_truncated_copy_of_the_raw_text(api, start_upload, chunks):
    f = CsvFile().row("a", "b", "c", "d")
    f.bad("x" * 2000, "y")
    f.bad("😀" * 600, "y")  # 4 bytes a character
    f.bad("€" * 700, "y")  # 3 bytes: the read cuts a character in two
    f.bad("é\r\nmulti-line", "y")
    f.row("e", "f", "g", "h")
    op_id = start_upload(f.content())
    run(op_id)
    assert_imported(api, op_id, f)
    assert [len(raw) for _, _, raw in errors_of(op_id)][:3] == [500, 500, 500]
    assert errors_of(op_id)[0][2] == "x" * 500


@pytest.fixture
def restore_field_limit():
    previous = csv.field_size_limit()
    yield
    csv.field_size_limit(previous)


@pytest.mark.django_db(transaction=True)
def test_an_unreadable_row_is_rejected_and_the_import_goes_on(api, start_upload, chunks, settings, restore_field_limit):
    settings.LONG_TASK_CSV_FIELD_LIMIT = 50
    f = CsvFile().row("a", "b", "c", "d")
    long_row = f._line(["x" * 100, "b", "c", "d"])
    f.parts.append(long_row)  # 4 fields, but one over the field limit
    f.row("e", "f", "g", "h")
    op_id = start_upload(f.content())
    op = run(op_id)
    assert (op.state, op.lines_finished, op.lines_failed) == (S.COMPLETED, 3, 1)
    assert rows_of(op_id) == [(1, dict(zip(HEADER, "abcd", strict=True))), (3, dict(zip(HEADER, "efgh", strict=True)))]
    [(line, reason, raw)] = errors_of(op_id)
    assert (line, raw) == (2, long_row.decode().rstrip("\n"))
    assert reason.startswith("unreadable row:") and "field limit" in reason


@pytest.mark.django_db(transaction=True)
def test_a_row_wider_than_one_field_limit_is_imported(api, register, chunks, settings, restore_field_limit):
    """The field limit is per field: a row of many fields within it is valid, however wide."""
    settings.LONG_TASK_CSV_FIELD_LIMIT = 10
    columns = list("abcdef")
    fields = [f"{name}" * 9 for name in columns]
    op_id = register()
    content = (",".join(columns) + "\n" + ",".join(fields) + "\n").encode()
    assert api.post("/upload/", {"op_id": op_id, "file": upload_file(content)}).status_code == 202
    op = run(op_id)
    assert (op.state, op.lines_finished, op.lines_failed) == (S.COMPLETED, 1, 0)
    assert rows_of(op_id) == [(1, dict(zip(columns, fields, strict=True)))]


@pytest.mark.django_db(transaction=True)
def test_a_line_over_the_line_limit_is_rejected_and_the_import_goes_on(api, start_upload, chunks, settings):
    settings.LONG_TASK_CSV_LINE_LIMIT = 100
    f = CsvFile().row("a", "b", "c", "d")
    long_row = f._line(["x" * 30, "y" * 30, "z" * 30, "w" * 30])
    f.parts.append(long_row)
    f.row("e", "f", "g", "h")
    op_id = start_upload(f.content())
    op = run(op_id)
    assert (op.state, op.lines_finished, op.lines_failed) == (S.COMPLETED, 3, 1)
    [(line, reason, _)] = errors_of(op_id)
    assert line == 2 and "a line is longer than 100 bytes" in reason


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "content",
    [b"name,note\n", b"name,note", BOM + b"a,b\r\n\r\n\r\n", b"\n\na\n\n"],
    ids=["header", "no final newline", "BOM, CRLF and blank lines", "blank lines around"],
)
def test_a_header_only_file_completes_with_zero_rows(api, start_upload, chunks, content):
    op_id = start_upload(content)
    op = run(op_id)
    assert (op.state, op.lines_finished, op.lines_failed, op.total_lines, op.error) == (S.COMPLETED, 0, 0, 0, "")
    assert rows_of(op_id) == []
    assert errors_of(op_id) == []
    body = status(api, op_id)
    assert (body["state"], body["is_finished"], body["lines_finished"]) == (S.COMPLETED, True, 0)


def strict_csv(bad_line: int) -> CsvFile:
    f = CsvFile()
    for n in range(1, 16):
        if n == bad_line - 1:
            f.blank()  # blank lines before the bad row do not move its number
        if n in (bad_line, 13):
            f.bad(f"bad{n}", "x")
        else:
            f.row(f"name{n}", "note", "city", str(n))
    return f


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("bad_line", [1, 5, 9, 10], ids=lambda n: f"line {n}")
@pytest.mark.parametrize("how", ["upload", "register"], ids=["strict at upload", "strict at register"])
def test_strict_fails_the_operation_at_the_first_bad_row(api, register, chunks, bad_line, how):
    chunks.size = 4
    f = strict_csv(bad_line)
    if how == "upload":
        op_id = register()
        response = api.post("/upload/", {"op_id": op_id, "file": upload_file(f.content()), "strict": "true"})
    else:
        op_id = register(strict=True)
        response = api.post("/upload/", {"op_id": op_id, "file": upload_file(f.content())})
    assert response.status_code == 202, response.content

    def assert_failed_at_the_bad_row() -> None:
        op = Operation.objects.get(pk=op_id)
        assert op.state == S.FAILED
        assert re.search(rf"\bline {bad_line}\b", op.error), op.error
        assert rows_of(op_id) == [row for row in f.rows if row[0] < bad_line]
        assert errors_of(op_id) == []
        assert (op.lines_finished, op.lines_failed) == (bad_line - 1, 0)
        # The checkpoint is before the bad row (at most blank lines in between).
        assert f.content()[f.ends[bad_line - 1] : op.position].strip(b"\r\n") == b""
        body = status(api, op_id)
        assert (body["state"], body["lines_finished"], body["is_finished"]) == (S.FAILED, bad_line - 1, False)
        assert body["error"]

    run(op_id)
    assert_failed_at_the_bad_row()
    # A resume meets the same row again: same failure, nothing stored twice.
    response = api.post("/resume/", {"op_id": op_id}, format="json")
    assert response.status_code == 202, response.content
    run(op_id)
    assert_failed_at_the_bad_row()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("endpoint", ["/upload/", "/resume/"])
def test_a_strict_failure_resumed_with_strict_false_counts_the_bad_rows_and_completes(api, register, endpoint):
    f = strict_csv(9)
    op_id = register(strict=True)
    assert api.post("/upload/", {"op_id": op_id, "file": upload_file(f.content())}).status_code == 202
    assert run(op_id).state == S.FAILED

    response = api.post(endpoint, {"op_id": op_id, "strict": "false"})
    assert response.status_code == 202, response.content
    assert Operation.objects.get(pk=op_id).options == {"strict": False}
    run(op_id)
    assert_imported(api, op_id, f)
    assert [line for line, _, _ in errors_of(op_id)] == [9, 13]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("endpoint", ["/upload/", "/resume/"])
def test_an_invalid_strict_is_refused_and_changes_nothing(api, register, endpoint):
    op_id = register()
    if endpoint == "/resume/":
        assert api.post("/upload/", {"op_id": op_id, "file": upload_file(csv_bytes(3))}).status_code == 202
        assert api.post("/pause/", {"op_id": op_id}).status_code == 200
    before = Operation.objects.get(pk=op_id)
    response = api.post(endpoint, {"op_id": op_id, "strict": "maybe", "file": upload_file(csv_bytes(3))})
    assert response.status_code == 400
    assert response.json() == {"message": "strict must be true or false"}
    after = Operation.objects.get(pk=op_id)
    assert (after.state, after.options, after.file.name) == (before.state, before.options, before.file.name)
    assert sorted(p.name for p in (Path(settings.MEDIA_ROOT) / "uploads").glob("*")) == (
        [Path(before.file.name).name] if before.file else []
    )


@pytest.mark.django_db(transaction=True)
def test_without_strict_the_same_rows_are_only_counted(api, start_upload, chunks):
    f = strict_csv(9)
    op_id = start_upload(f.content())
    run(op_id)
    assert_imported(api, op_id, f)
    assert [line for line, _, _ in errors_of(op_id)] == [9, 13]


# --- I1: exactly once ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("size", [1, 7, 120, 1000])
def test_every_line_is_stored_exactly_once_whatever_the_chunk_size(start_upload, chunks, size):
    chunks.size = size
    op_id = start_upload(csv_bytes(120))
    op = run(op_id)
    assert (op.state, op.lines_finished, op.lines_failed) == (S.COMPLETED, 120, 0)
    assert stored_lines(op_id) == list(range(1, 121))
    expected = [
        (
            n,
            dict(
                zip(
                    CONFTEST_HEADER,
                    [f"name{n}", f"+1555{n:07d}", f"user{n}@example.com", f"City {n % 97}"],
                    strict=True,
                )
            ),
        )
        for n in range(1, 121)
    ]
    assert rows_of(op_id) == expected
    assert chunks.count >= math.ceil(120 / size)


@pytest.mark.django_db(transaction=True)
def test_a_chunk_read_while_written_also_stops_at_the_chunk_time(start_upload, chunks, settings, monkeypatch):
    """PostgreSQL streams a chunk into COPY as it reads it: it stops after the chunk's time (checked
    after each block of lines), whatever its estimated size, so that a slow spell makes no long
    chunk for a pause to wait for. SQLite reads a chunk before the write lock: it keeps its size."""
    settings.LONG_TASK_CHUNK_SECONDS = 0  # past at once: every streamed chunk stops after a block
    monkeypatch.setattr(upload, "BLOCK_BYTES", 1024)
    chunks.size = 1000
    content = csv_bytes(1000)
    op_id = start_upload(content)
    op = run(op_id)
    assert (op.state, op.lines_finished, op.lines_failed) == (S.COMPLETED, 1000, 0)
    assert stored_lines(op_id) == list(range(1, 1001))
    blocks, room = 0, 0  # blocks of whole lines of at most 1024 bytes, as the reader cuts them
    for line in content.splitlines(keepends=True)[1:]:
        if len(line) > room:
            blocks, room = blocks + 1, 1024
        room -= len(line)
    assert blocks >= 40
    streamed = connection.vendor == "postgresql"
    # PostgreSQL: a chunk a block, then the end; SQLite: 1000 rows, then the end.
    assert chunks.count == (blocks + 1 if streamed else 2)


# --- I8: pause, resume from the byte offset -----------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("pause_after", [1, 4, 9], ids=lambda k: f"after {k} chunks")
@pytest.mark.parametrize("how", ["resume", "upload"], ids=["/resume/", "/upload/ again"])
def test_pause_and_resume_give_the_uninterrupted_result(api, start_upload, chunks, pause_after, how):
    f = rich_csv(terminator="\r\n", bom=True)
    content = f.content()
    reference = start_upload(content)
    run(reference)
    assert_imported(api, reference, f)

    op_id = start_upload(content)
    chunks.count = 0

    def pause(count: int) -> None:
        if count == pause_after:
            assert request(api, "pause", op_id)["state"] == S.PAUSING

    chunks.after_chunk = pause
    op = run(op_id)
    # The chunk after the request rolled back; the checkpoint is the last committed chunk.
    done = pause_after * chunks.size
    assert (op.state, op.lines_finished, op.position) == (S.PAUSED, done, f.ends[done])
    assert rows_of(op_id) == [row for row in f.rows if row[0] <= done]
    assert errors_of(op_id) == [error for error in f.errors if error[0] <= done]
    assert op.lines_failed == len(errors_of(op_id))

    overwrite_done_part(op)
    chunks.after_chunk = None
    resume(api, op_id, how, content)
    run(op_id)
    assert_imported(api, op_id, f)
    assert rows_of(op_id) == rows_of(reference)
    assert errors_of(op_id) == errors_of(reference)


@pytest.mark.django_db(transaction=True)
def test_pausing_after_every_chunk_and_resuming_gives_the_uninterrupted_result(api, start_upload, chunks):
    f = rich_csv()
    content = f.content()
    op_id = start_upload(content)

    pause_after_every_chunk(api, chunks, op_id)
    pauses = 0
    while (op := run(op_id)).state == S.PAUSED:
        pauses += 1
        assert (op.lines_finished, op.position) == (pauses * chunks.size, f.ends[pauses * chunks.size])
        assert stored_lines(op_id) == [line for line, _ in f.rows if line <= op.lines_finished]
        overwrite_done_part(op)
        resume(api, op_id, "resume" if pauses % 2 else "upload", content)
        assert pauses < 100
    assert pauses == f.lines // chunks.size
    assert_imported(api, op_id, f)


# --- I3: terminate leaves nothing ---------------------------------------------------------------


def assert_terminated(api, op_id: int, path: Path) -> None:
    op = Operation.objects.get(pk=op_id)
    assert op.state == S.TERMINATED
    assert UploadedRow.objects.filter(operation_id=op_id).count() == 0
    assert RowError.objects.filter(operation_id=op_id).count() == 0
    assert not path.exists()
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(f"{op_id}-")] == []
    assert (op.lines_finished, op.lines_failed, op.position) == (0, 0, 0)
    body = status(api, op_id)
    assert (body["state"], body["is_terminated"]) == (S.TERMINATED, True)


@pytest.fixture
def bystander(start_upload, chunks) -> Callable[[], None]:
    """Another operation's finished import, which no terminate may touch."""
    op_id = start_upload(csv_bytes(10))
    run(op_id)
    chunks.count = 0

    def check() -> None:
        assert stored_lines(op_id) == list(range(1, 11))
        assert Operation.objects.get(pk=op_id).state == S.COMPLETED

    return check


@pytest.mark.django_db(transaction=True)
def test_force_terminate_mid_import_leaves_nothing(api, start_upload, chunks, bystander):
    f = rich_csv()
    op_id = start_upload(f.content())
    path = stored_path(op_id)
    seen = {}

    def terminate(count: int) -> None:
        if count == 5:
            seen["rows"] = UploadedRow.objects.filter(operation_id=op_id).count()
            seen["errors"] = RowError.objects.filter(operation_id=op_id).count()
            assert request(api, "terminate", op_id, force=True)["state"] == S.TERMINATING

    chunks.after_chunk = terminate
    run(op_id)
    done = 5 * chunks.size
    expected = {
        "rows": len([1 for row in f.rows if row[0] <= done]),
        "errors": len([1 for e in f.errors if e[0] <= done]),
    }
    assert seen == expected and expected["errors"] > 0  # there was something to roll back
    assert_terminated(api, op_id, path)
    run(op_id)  # the worker again: nothing to do, nothing changes
    assert_terminated(api, op_id, path)
    bystander()


@pytest.mark.django_db(transaction=True)
def test_terminate_of_a_paused_import_also_removes_rows_beyond_the_checkpoint(api, start_upload, chunks, bystander):
    f = rich_csv()
    op_id = start_upload(f.content())
    path = stored_path(op_id)
    chunks.after_chunk = lambda count: count == 2 and request(api, "pause", op_id)
    op = run(op_id)
    assert (op.state, op.lines_finished) == (S.PAUSED, 6)
    # What a racing worker might have left past the checkpoint (I3).
    UploadedRow.objects.create(operation_id=op_id, line_number=50, data={"stray": "row"})
    RowError.objects.create(operation_id=op_id, line_number=51, reason="stray", raw="")
    chunks.after_chunk = None
    assert request(api, "terminate", op_id)["state"] == S.TERMINATING
    run(op_id)
    assert_terminated(api, op_id, path)
    bystander()


@pytest.fixture
def short_lease(settings):
    """Leases that expire quickly, so that a crashed run's operation can be taken up again."""
    settings.LONG_TASK_LEASE_SECONDS = 0.3

    def wait_for_expiry() -> None:
        time.sleep(0.4)

    return wait_for_expiry


def paused_then_terminating(api, start_upload, chunks, *, pause_after: int) -> tuple[int, CsvFile, Path]:
    f = rich_csv()
    op_id = start_upload(f.content())
    path = stored_path(op_id)
    chunks.after_chunk = lambda count: count == pause_after and request(api, "pause", op_id)
    op = run(op_id)
    assert (op.state, op.lines_finished) == (S.PAUSED, pause_after * chunks.size)
    chunks.after_chunk = None
    assert request(api, "terminate", op_id)["state"] == S.TERMINATING
    return op_id, f, path


@pytest.mark.django_db(transaction=True)
def test_a_rollback_interrupted_mid_chunk_is_taken_up_from_its_checkpoint(
    api, start_upload, chunks, bystander, short_lease, monkeypatch
):
    op_id, f, path = paused_then_terminating(api, start_upload, chunks, pause_after=6)
    done = 6 * chunks.size
    original = Upload.rollback_chunk
    calls: list[int] = []

    def crashing_rollback_chunk(self, op, *, max_rows):
        calls.append(op.rollback_position)
        position = original(self, op, max_rows=max_rows)
        if len(calls) == 3:
            raise RuntimeError("simulated crash inside the third rollback chunk")
        return position

    monkeypatch.setattr(Upload, "rollback_chunk", crashing_rollback_chunk)
    op = run(op_id)
    # Two rollback chunks committed; the third rolled back with the crash.
    assert (op.state, op.rollback_position) == (S.TERMINATING, 2 * chunks.size)
    assert rows_of(op_id) == [row for row in f.rows if 2 * chunks.size < row[0] <= done]
    assert errors_of(op_id) == [error for error in f.errors if error[0] <= done]
    assert path.exists()

    short_lease()
    run(op_id)
    assert calls == [0, 3, 6, *range(6, done, chunks.size)]  # continued from the checkpoint
    assert_terminated(api, op_id, path)
    bystander()


@pytest.mark.django_db(transaction=True)
def test_a_rollback_interrupted_after_deleting_the_file_is_finished_later(
    api, start_upload, chunks, bystander, short_lease, monkeypatch
):
    op_id, f, path = paused_then_terminating(api, start_upload, chunks, pause_after=6)
    original = Upload.rollback_rest
    calls = []

    def crashing_rollback_rest(self, op):
        calls.append(op.pk)
        kept = original(self, op)
        if len(calls) == 1:
            raise RuntimeError("simulated crash before the final commit")
        return kept

    monkeypatch.setattr(Upload, "rollback_rest", crashing_rollback_rest)
    op = run(op_id)
    assert op.state == S.TERMINATING
    assert not path.exists()
    assert rows_of(op_id) == []
    assert errors_of(op_id) == [error for error in f.errors if error[0] <= 18]  # rolled back with the crash
    short_lease()
    run(op_id)
    assert calls == [op_id, op_id]
    assert_terminated(api, op_id, path)
    bystander()


# --- I4 on the hot path: a connection lost during the driver-level insert -----------------------


def kill_connection_of_this_thread() -> None:
    """Terminate this thread's PostgreSQL backend from another connection, as a network cut or a
    server restart would, and wait until it is gone."""
    pid = connection.connection.info.backend_pid
    with other_session() as killer:
        killer.execute("SELECT pg_terminate_backend(%s)", [pid])
        deadline = time.monotonic() + 10
        while killer.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone():
            assert time.monotonic() < deadline
            time.sleep(0.01)


@pytest.mark.django_db(transaction=True)
def test_a_connection_lost_during_copy_is_retried_not_failed(api, start_upload, chunks, monkeypatch):
    """The worker retries a chunk whose connection was cut (worker.Runner.run); that must hold for
    the chunk's row insert too, which is where an import spends most of its time."""
    if connection.vendor != "postgresql":
        pytest.skip("kills a PostgreSQL backend")
    f = rich_csv()
    op_id = start_upload(f.content())
    original = rowstore.write_rows
    calls = []

    def write_rows_on_a_cut_connection(rows):
        calls.append(rows)
        if len(calls) == 4:
            kill_connection_of_this_thread()
        return original(rows)

    monkeypatch.setattr(rowstore, "write_rows", write_rows_on_a_cut_connection)
    op = run(op_id)
    assert (op.state, op.error) == (S.COMPLETED, "")
    assert_imported(api, op_id, f)


# --- an unclosed quote costs one row -----------------------------------------------------------


def unclosed_quote_csv(rows: int, *, bad_line: int, bad: str = '"oops') -> bytes:
    """Header `a,b`, then `rows` rows `n,v<n>`, except that row `bad_line` opens a quote that
    nothing closes."""
    lines = ["a,b\n"] + [f"{n},{bad}\n" if n == bad_line else f"{n},v{n}\n" for n in range(1, rows + 1)]
    return "".join(lines).encode()


def expected_rows(rows: int, *, bad_line: int) -> list[tuple[int, dict]]:
    return [(n, {"a": str(n), "b": f"v{n}"}) for n in range(1, rows + 1) if n != bad_line]


@pytest.mark.django_db(transaction=True)
def test_an_unclosed_quote_is_a_row_error_and_the_import_recovers_at_the_next_line(api, start_upload, chunks):
    """Issue 9, finding 5: `a,b\\n1,"oops\\n` followed by 100,000 good lines completed with one
    row (a 400 KB field) and lines_failed 0. Now line 1 is the one bad row."""
    chunks.size = 20_000
    content = b'a,b\n1,"oops\n' + b"2,y\n" * 100_000
    op_id = start_upload(content)
    op = run(op_id)
    assert (op.state, op.lines_finished, op.lines_failed, op.total_lines) == (S.COMPLETED, 100_001, 1, 100_001)
    [(line, reason, raw)] = errors_of(op_id)
    assert (line, raw) == (1, '1,"oops')
    assert reason == "unclosed quote: the quoted field that opens on this line runs to the end of the file"
    assert UploadedRow.objects.filter(operation_id=op_id).count() == 100_000
    assert stored_lines(op_id) == list(range(2, 100_002))
    assert op.position == len(content)


@pytest.mark.django_db(transaction=True)
def test_an_unclosed_quote_past_the_field_limit_costs_one_row(api, start_upload, chunks, settings, restore_field_limit):
    settings.LONG_TASK_CSV_FIELD_LIMIT = 200
    content = unclosed_quote_csv(100, bad_line=7)
    op_id = start_upload(content)
    op = run(op_id)
    assert (op.state, op.lines_finished, op.lines_failed) == (S.COMPLETED, 100, 1)
    [(line, reason, raw)] = errors_of(op_id)
    assert (line, raw) == (7, '7,"oops')
    assert reason.startswith("unclosed quote? ") and "field limit" in reason
    assert rows_of(op_id) == expected_rows(100, bad_line=7)


@pytest.mark.django_db(transaction=True)
def test_a_quote_closed_many_rows_later_costs_one_row(api, start_upload, chunks):
    """A stray quote closes the unclosed one lines later: the lines between are rows of the
    table, so the record is taken for an unclosed quote, not for a field with line breaks."""
    content = unclosed_quote_csv(30, bad_line=4).replace(b"9,v9\n", b'9,"v9"\n').replace(b"12,v12", b'12,v"12')
    op_id = start_upload(content)
    op = run(op_id)
    assert (op.state, op.lines_finished, op.lines_failed) == (S.COMPLETED, 30, 1)
    [(line, reason, raw)] = errors_of(op_id)
    assert (line, raw) == (4, '4,"oops')
    assert reason.startswith("unclosed quote: the quoted field that opens on this line swallows")
    rows = dict(rows_of(op_id))
    assert sorted(rows) == [n for n in range(1, 31) if n != 4]
    assert rows[9] == {"a": "9", "b": "v9"} and rows[12] == {"a": "12", "b": 'v"12'}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "field",
    [
        "two\nlines",
        "a, b\nc, d\ne",  # one inner line with the header's width is text, not a row
        "one\ntwo\nthree\nfour\nfive",  # inner lines of one field in a 2-column file
        "x\n\n\n\ny",
        'quote "" inside\nand a, comma',
    ],
)
def test_quoted_fields_with_line_breaks_are_still_fields(api, start_upload, chunks, field):
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerows([["a", "b"], ["1", "v1"], ["2", field], ["3", "v3"]])
    op_id = start_upload(out.getvalue().encode())
    op = run(op_id)
    assert (op.state, op.lines_finished, op.lines_failed) == (S.COMPLETED, 3, 0)
    assert rows_of(op_id)[1] == (2, {"a": "2", "b": field})


@pytest.mark.django_db(transaction=True)
def test_strict_fails_at_an_unclosed_quote(api, register, chunks):
    op_id = register(strict=True)
    content = unclosed_quote_csv(50, bad_line=20)
    assert api.post("/upload/", {"op_id": op_id, "file": upload_file(content)}).status_code == 202
    op = run(op_id)
    assert (op.state, op.lines_finished, op.lines_failed) == (S.FAILED, 19, 0)
    assert op.error.startswith("line 20: unclosed quote:")
    assert content[op.position :].startswith(b'20,"oops\n')
    assert rows_of(op_id) == expected_rows(19, bad_line=0)


@pytest.mark.django_db(transaction=True)
def test_pausing_after_every_chunk_around_an_unclosed_quote_gives_the_uninterrupted_result(api, start_upload, chunks):
    """The checkpoint after the bad row is the end of its first line: a resume goes on there."""
    content = unclosed_quote_csv(40, bad_line=11)
    op_id = start_upload(content)

    pause_after_every_chunk(api, chunks, op_id)
    pauses = 0
    while (op := run(op_id)).state == S.PAUSED:
        pauses += 1
        assert op.lines_finished == pauses * chunks.size
        assert content[: op.position].count(b"\n") == op.lines_finished + 1  # a line boundary
        overwrite_done_part(op)
        resume(api, op_id, "resume", content)
        assert pauses < 100
    assert (op.state, op.lines_finished, op.lines_failed) == (S.COMPLETED, 40, 1)
    assert rows_of(op_id) == expected_rows(40, bad_line=11)
    assert [(line, raw) for line, _, raw in errors_of(op_id)] == [(11, '11,"oops')]
