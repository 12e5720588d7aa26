"""The invariants of SPEC §4 with real `process_tasks` workers on the test database.

A test that acts mid-import holds its worker at a chunk boundary with a gate (tests/gate.py):
at `committed` (between two chunks) or, where the database lets a request in meanwhile, at
`written` (rows written, not committed), with chunks of exactly CHUNK rows.
"""

import http.client
import json
import re
import signal
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from operations.models import Operation, RowError, UploadedRow
from testbed.machine import peak_rss_kib
from tests.support import (
    csv_bytes,
    exact_chunks,
    op_in_state,
    overlapping_chunks,
    running_server,
    stored_lines,
    wait_for,
)

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]
S = Operation.State
CHUNK = 500
CHUNKS = exact_chunks(CHUNK)


def status(api, op_id: int) -> dict:
    response = api.post("/get_status/", {"op_id": op_id})
    assert response.status_code == 200, response.content
    return response.json()


def row_count(op_id: int) -> int:
    return UploadedRow.objects.filter(operation_id=op_id).count()


def stored_file(op_id: int) -> Path:
    return Path(settings.MEDIA_ROOT) / Operation.objects.get(pk=op_id).file.name


def with_bad_rows(rows: int, bad_every: int) -> bytes:
    """A CSV whose data rows number bad_every, 2*bad_every... have a field too few."""
    lines = csv_bytes(rows).decode().splitlines(keepends=True)
    for n in range(bad_every, rows + 1, bad_every):
        lines[n] = ",".join(lines[n].split(",")[:3]) + "\n"
    return "".join(lines).encode()


def test_import_stores_each_accepted_row_exactly_once(api, start_upload, workers):
    """I1: the stored rows are exactly the accepted rows of 1..lines_finished, each once."""
    workers.start()
    op_id = start_upload(with_bad_rows(5_000, bad_every=700))
    wait_for(lambda: op_in_state(op_id, S.COMPLETED), what="completed")

    rejected = set(range(700, 5_001, 700))
    assert stored_lines(op_id) == [n for n in range(1, 5_001) if n not in rejected]
    assert set(RowError.objects.filter(operation_id=op_id).values_list("line_number", flat=True)) == rejected
    body = status(api, op_id)
    assert (body["lines_finished"], body["lines_failed"], body["total_lines"]) == (5_000, len(rejected), 5_000)
    assert body["is_finished"] is True and body["percent"] == 100.0
    row = UploadedRow.objects.get(operation_id=op_id, line_number=42)
    assert row.data == {"name": "name42", "phone": "+15550000042", "email": "user42@example.com", "city": "City 42"}


def in_flight_point() -> str:
    """Where a request can land while the worker is inside a chunk: PostgreSQL lets it in while
    the chunk's rows are written and not committed; SQLite's one writer makes it wait for the
    commit, so there the worker is held between chunks."""
    return "written" if connection.vendor == "postgresql" else "committed"


def test_pause_stops_the_chunk_in_flight_and_resume_finishes_exactly(api, start_upload, workers, gate):
    """I2 and I8: no chunk commits after the pause answered; the count holds until resume;
    resume continues from the checkpoint without reading the finished part of the file."""
    held = gate(in_flight_point())
    workers.start(gate=held, **CHUNKS)
    rows = 3_000
    op_id = start_upload(csv_bytes(rows))
    in_flight = held.pass_through(op_id, in_flight_point(), 1)

    response = api.post("/pause/", {"op_id": op_id})
    assert response.status_code == 200
    assert response.json()["state"] == S.PAUSING  # the worker is held in the import
    at_pause = (row_count(op_id), Operation.objects.get(pk=op_id).lines_finished)
    held.release(in_flight)

    wait_for(lambda: op_in_state(op_id, S.PAUSED), what="paused")
    at_ack = (row_count(op_id), Operation.objects.get(pk=op_id).lines_finished)
    held.open_all()
    time.sleep(0.5)  # a worker that went on would commit chunks meanwhile: nothing may move
    later = (row_count(op_id), Operation.objects.get(pk=op_id).lines_finished)
    assert at_pause == at_ack == later
    assert at_pause[0] == at_pause[1] == CHUNK * (1 if in_flight_point() == "written" else 2)
    assert status(api, op_id)["lines_finished"] == at_pause[1]

    # Make the finished part of the file unreadable: a resume that re-read it would fail.
    op = Operation.objects.get(pk=op_id)
    path = stored_file(op_id)
    with open(path, "r+b") as handle:
        handle.write(b"\xff" * op.position)

    response = api.post("/resume/", {"op_id": op_id})
    assert response.status_code == 202
    workers.start()  # a fast worker finishes it (either worker may take it)
    wait_for(lambda: op_in_state(op_id, S.COMPLETED, S.FAILED), timeout=60, what="completed")
    op.refresh_from_db()
    assert op.state == S.COMPLETED, op.error
    assert stored_lines(op_id) == list(range(1, rows + 1))


def pause_held(api, gate, op_id: int) -> None:
    """Pause an operation whose worker `gate` holds at `committed`, and let the worker see it."""
    held = gate.wait_held(op_id, "committed")
    assert api.post("/pause/", {"op_id": op_id}).json()["state"] == S.PAUSING
    gate.open_all()
    wait_for(lambda: op_in_state(op_id, S.PAUSED), what="paused")
    assert Operation.objects.get(pk=op_id).lines_finished == CHUNK * held.n


def test_terminate_of_a_paused_operation_leaves_nothing(api, start_upload, workers, gate):
    """I3: terminated means no rows, no row errors and no stored file."""
    held = gate("committed")
    workers.start(gate=held, **CHUNKS)
    op_id = start_upload(with_bad_rows(3_000, bad_every=50))
    pause_held(api, held, op_id)
    path = stored_file(op_id)
    assert path.exists() and row_count(op_id) > 0 and RowError.objects.filter(operation_id=op_id).exists()

    response = api.post("/terminate/", {"op_id": op_id, "wait": 10})
    assert response.status_code == 200
    assert response.json()["state"] == S.TERMINATED
    assert row_count(op_id) == 0
    assert not RowError.objects.filter(operation_id=op_id).exists()
    assert not path.exists()
    assert status(api, op_id)["is_terminated"] is True


def test_forced_terminate_rolls_back_a_racing_chunk(api, start_upload, workers, gate):
    """I3 with a worker in the middle of a chunk: the chunk rolls back, the rest is deleted,
    and nothing arrives afterwards."""
    held = gate(in_flight_point())
    workers.start(gate=held, **CHUNKS)
    op_id = start_upload(csv_bytes(3_000))
    held.pass_through(op_id, in_flight_point(), 1)
    path = stored_file(op_id)

    response = api.post("/terminate/", {"op_id": op_id})
    assert response.status_code == 409 and response.json() == {
        "message": "Pause the operation",
        "hint": "force=true terminates a running operation",
    }
    response = api.post("/terminate/", {"op_id": op_id, "force": "true"})
    assert response.status_code == 200 and response.json()["state"] == S.TERMINATING
    held.open_all()

    wait_for(lambda: op_in_state(op_id, S.TERMINATED), what="terminated")
    time.sleep(0.5)  # a chunk that arrived afterwards would be committed meanwhile
    assert row_count(op_id) == 0
    assert not path.exists()


def test_status_and_pause_do_not_wait_for_a_chunk(api, start_upload, workers, gate):
    """I6: a chunk holds its transaction open (the gate holds it until the end of the test);
    status answers at once on both databases, and so does pause on PostgreSQL (row lock FOR
    NO KEY UPDATE does not wait for the chunk's inserts). SQLite has one writer at a time, so
    there a pause waits for the chunk in flight, which LONG_TASK_CHUNK_SECONDS keeps short in
    normal running."""
    held = gate("written")
    workers.start(gate=held, **CHUNKS)
    op_id = start_upload(csv_bytes(2_000))
    held.wait_held(op_id, "written")  # inside a chunk now

    started = time.monotonic()
    assert status(api, op_id)["state"] == S.RUNNING
    status_seconds = time.monotonic() - started
    assert status_seconds < 1.0, f"status took {status_seconds:.2f}s"

    if connection.vendor == "postgresql":
        started = time.monotonic()
        assert api.post("/pause/", {"op_id": op_id}).json()["state"] == S.PAUSING
        pause_seconds = time.monotonic() - started
        assert pause_seconds < 1.0, f"pause took {pause_seconds:.2f}s"


def test_worker_memory_does_not_grow_with_the_file(start_upload, workers):
    """I7 (worker): the peak RSS of a worker importing 20,000 rows and one importing 200,000
    (11 MB) are within 8 MiB; reading the file whole would cost several times its size."""
    peaks = []
    for rows in (20_000, 200_000):
        worker = workers.start()
        op_id = start_upload(csv_bytes(rows))
        wait_for(lambda op_id=op_id: op_in_state(op_id, S.COMPLETED), timeout=120, what="completed")
        peaks.append(peak_rss_kib(worker.pid))
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    small, large = peaks
    assert large - small < 8 * 1024, f"peak RSS {small} KiB for 20k rows, {large} KiB for 200k rows"


@pytest.mark.s3
def test_worker_memory_does_not_grow_with_the_file_on_s3(start_upload, workers, s3):
    """I7 (worker) on S3: ranged GETs of a block, never the whole object."""
    peaks = []
    for rows in (20_000, 200_000):
        worker = workers.start(**s3.env())
        op_id = start_upload(csv_bytes(rows))
        wait_for(lambda op_id=op_id: op_in_state(op_id, S.COMPLETED), timeout=120, what="completed")
        assert stored_lines(op_id)[-1] == rows
        peaks.append(peak_rss_kib(worker.pid))
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    small, large = peaks
    assert large - small < 8 * 1024, f"peak RSS {small} KiB for 20k rows, {large} KiB for 200k rows"


def _stream_upload(port: int, op_id: int, token: str, size: int) -> int:
    """POST a multipart upload of about `size` bytes, generated on the fly (never in memory)."""
    boundary = "long-task-test-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="op_id"\r\n\r\n{op_id}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.csv"\r\n'
        "Content-Type: text/csv\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    line = b"name,+15550000000,user@example.com,City\n"
    body_lines = size // len(line)
    total = len(head) + len(b"name,phone,email,city\n") + body_lines * len(line) + len(tail)

    def body():
        yield head + b"name,phone,email,city\n"
        block = line * 1000
        for _ in range(body_lines // 1000):
            yield block
        yield line * (body_lines % 1000)
        yield tail

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.putrequest("POST", "/upload/")
    conn.putheader("Authorization", f"Token {token}")
    conn.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
    conn.putheader("Content-Length", str(total))
    conn.endheaders()
    for piece in body():
        conn.send(piece)
    status_code = conn.getresponse().status
    conn.close()
    return status_code


def test_web_memory_does_not_grow_with_the_upload(user, register, media_root, tmp_path):
    """I7 (web): the server's peak RSS after a 40 MB upload is within 8 MiB of the peak
    after a 2 MB one: the upload streams to disk."""
    from rest_framework.authtoken.models import Token

    token = Token.objects.get_or_create(user=user)[0].key
    with running_server(media_root=media_root, log_path=tmp_path / "web.log") as (server, port):
        assert _stream_upload(port, register(), token, 2 * 1024**2) == 202
        small = peak_rss_kib(server.pid)
        assert _stream_upload(port, register(), token, 40 * 1024**2) == 202
        large = peak_rss_kib(server.pid)
    assert large - small < 8 * 1024, f"peak RSS {small} KiB after 2 MB, {large} KiB after 40 MB"


@pytest.mark.s3
def test_web_memory_does_not_grow_with_the_upload_on_s3(user, register, media_root, tmp_path, s3):
    """I7 (web) on S3: the upload streams into the object, one part (8 MiB) in memory: the
    peak after 40 MB is within 8 MiB of the peak after 12 MB (both more than a part)."""
    from rest_framework.authtoken.models import Token

    token = Token.objects.get_or_create(user=user)[0].key
    with running_server(media_root=media_root, log_path=tmp_path / "web.log", **s3.env()) as (server, port):
        assert _stream_upload(port, register(), token, 12 * 1024**2) == 202
        small = peak_rss_kib(server.pid)
        assert _stream_upload(port, register(), token, 40 * 1024**2) == 202
        large = peak_rss_kib(server.pid)
    assert large - small < 8 * 1024, f"peak RSS {small} KiB after 12 MB, {large} KiB after 40 MB"
    assert len(s3.all_keys()) == 2 and s3.multipart_uploads() == []
    assert not any(path.is_file() for path in media_root.rglob("*"))


# --- Export: the same guarantees for the second type ---------------------------------------------


def exported_source(start_upload, workers, rows: int) -> tuple[int, bytes]:
    """An imported Upload, and its export made without interruption (the reference file), by a
    fast worker that is gone afterwards."""
    fast = workers.start()
    source_id = start_upload(csv_bytes(rows, bom=True))
    wait_for(lambda: op_in_state(source_id, S.COMPLETED), what="source imported")
    reference_id = start_export(source_id)
    wait_for(lambda: op_in_state(reference_id, S.COMPLETED), what="reference exported")
    fast.send_signal(signal.SIGKILL)
    fast.wait()
    return source_id, exported_file(reference_id)


def start_export(source_id: int) -> int:
    from operations import services
    from operations.state_machine import Actor

    owner = Operation.objects.get(pk=source_id).owner
    actor = Actor.for_user(owner)
    op = services.operation_register(op_type="Export", actor=actor, data={"source": source_id})
    services.operation_start(op_id=op.pk, actor=actor, data={}, files={})
    return op.pk


def exported_file(op_id: int) -> bytes:
    return (Path(settings.MEDIA_ROOT) / Operation.objects.get(pk=op_id).file.name).read_bytes()


def test_export_pause_and_resume_by_real_workers_give_the_reference_file(api, start_upload, workers, gate):
    _, reference = exported_source(start_upload, workers, 3_000)
    source_id = Operation.objects.filter(op_type="Upload").get().pk
    held = gate("committed")
    workers.start(gate=held, **CHUNKS)
    op_id = start_export(source_id)
    held.wait_held(op_id, "committed")

    assert api.post("/pause/", {"op_id": op_id}).json()["state"] == S.PAUSING
    at_pause = Operation.objects.get(pk=op_id).checkpoint["last_line"]
    held.open_all()
    wait_for(lambda: op_in_state(op_id, S.PAUSED), what="paused")
    time.sleep(0.5)  # a worker that went on would commit chunks meanwhile: nothing may move
    assert Operation.objects.get(pk=op_id).checkpoint["last_line"] == at_pause == CHUNK

    assert api.post("/resume/", {"op_id": op_id}).status_code == 202
    wait_for(lambda: op_in_state(op_id, S.COMPLETED), timeout=60, what="completed")
    assert exported_file(op_id) == reference


def test_export_killed_mid_chunk_resumes_to_a_byte_identical_file(start_upload, workers, gate):
    """I4 for Export: SIGKILL while a chunk's part is written and not committed; another worker
    takes over from the checkpoint and the result is the reference file, byte for byte."""
    _, reference = exported_source(start_upload, workers, 3_000)
    source_id = Operation.objects.filter(op_type="Upload").get().pk
    held = gate("written")
    doomed = workers.start(gate=held, **CHUNKS)
    op_id = start_export(source_id)
    held.pass_through(op_id, "written", 1)  # inside a chunk: its part written, the checkpoint not committed
    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    op = Operation.objects.get(pk=op_id)
    assert op.state == S.RUNNING and op.lines_finished == CHUNK

    workers.start()
    wait_for(lambda: op_in_state(op_id, S.COMPLETED), timeout=60, what="completed")
    assert exported_file(op_id) == reference
    assert overlapping_chunks(workers.chunk_records()) == []


def test_export_terminate_deletes_the_partial_file(api, start_upload, workers, gate):
    """I3 for Export: terminated leaves no part and no result file."""
    source_id = start_upload(csv_bytes(3_000))
    fast = workers.start()
    wait_for(lambda: op_in_state(source_id, S.COMPLETED), timeout=60, what="source imported")
    fast.send_signal(signal.SIGKILL)
    fast.wait()
    held = gate("committed")
    workers.start(gate=held, **CHUNKS)
    op_id = start_export(source_id)
    pause_held(api, held, op_id)
    parts = Path(settings.MEDIA_ROOT) / "exports" / str(op_id)
    assert list(parts.iterdir())

    assert api.post("/terminate/", {"op_id": op_id, "wait": 10}).json()["state"] == S.TERMINATED
    assert not list(parts.iterdir())
    assert not list((Path(settings.MEDIA_ROOT) / "exports").glob(f"{op_id}-*"))
    assert row_count(source_id) == 3_000


# --- what users read of a failure ------------------------------------------------------------


def test_a_failing_workers_error_and_events_show_no_internals(api, start_upload, workers):
    """The status `error` and the events show no traceback, server path, host name or PID: the
    error is a message and a worker an opaque id; the details are in the worker's log."""
    import os
    import socket

    op_id = start_upload(csv_bytes(500))
    stored_file(op_id).unlink()  # the worker's open() then fails: an environment problem
    worker = workers.start()
    wait_for(lambda: op_in_state(op_id, S.FAILED), what="failed")

    body = status(api, op_id)
    events = api.get(f"/api/operations/{op_id}/events/").json()["results"]
    shown = json.dumps([body["error"], events])
    assert body["error"] == "internal error (FileNotFoundError); the worker's log has the details"
    for secret in ("Traceback", 'File "', str(settings.MEDIA_ROOT), "/uploads/", socket.gethostname()):
        assert secret not in shown, secret
    for pid in (worker.pid, os.getpid()):
        assert not re.search(rf"\b{pid}\b", shown), pid
    worker_actors = {event["actor"] for event in events if event["actor"].startswith("worker:")}
    assert worker_actors == {f"worker:{workers.worker_id(worker)}"}
    assert re.fullmatch(r"worker:[0-9a-f]{12}", worker_actors.pop())
    # The log has what an operator needs.
    log = Path(worker.log_path).read_text(errors="replace")
    assert "Traceback" in log and "FileNotFoundError" in log and f"is process {worker.pid}" in log
