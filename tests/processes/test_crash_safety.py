"""SPEC I4 and I5 with real processes: SIGKILL, SIGTERM, cut connections, an unavailable
database, several workers, and a storm of control requests on SQLite.

A test that acts mid-import holds its worker at a chunk boundary with a gate (tests/gate.py),
with chunks of exactly CHUNK rows (sized by a time target never reached), so that the file has
several: the import is where the test says when it acts, however fast the machine is."""

import json
import random
import signal
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.db import connection
from rest_framework.authtoken.models import Token

from operations.models import Operation, OperationEvent
from operations.services import operation_resume
from operations.state_machine import Actor
from tests.conftest import csv_bytes, op_in_state, overlapping_chunks, stored_lines, wait_for
from tests.support import exact_chunks, other_session, running_server

from .test_processes import row_count, stored_file

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]
S = Operation.State
LEASE = 2.0
CHUNK = 500
CHUNKS = exact_chunks(CHUNK)
postgresql_only = pytest.mark.skipif("connection.vendor != 'postgresql'", reason="PostgreSQL fault injection")


def lines_finished(op_id: int) -> int:
    return Operation.objects.get(pk=op_id).lines_finished


def wait_until_moving(op_id: int, *, since: int, timeout: float) -> float:
    """Seconds until the operation commits a chunk past `since` lines (or finishes)."""
    started = time.monotonic()
    wait_for(
        lambda: lines_finished(op_id) > since or op_in_state(op_id, S.COMPLETED),
        timeout=timeout,
        what=f"operation {op_id} to move past line {since}",
    )
    return time.monotonic() - started


def test_a_killed_workers_operation_is_taken_over_from_its_checkpoint(start_upload, workers, gate):
    """I4: SIGKILL in the middle of a chunk; another live worker continues from the checkpoint
    within the lease, and the result has every row exactly once."""
    held = gate("written")
    doomed = workers.start(gate=held, lease_seconds=LEASE, **CHUNKS)
    op_id = start_upload(csv_bytes(2_000))
    held.pass_through(op_id, "written", 1)  # inside the second chunk: rows written, not committed
    holder = Operation.objects.get(pk=op_id).lease_owner
    assert holder == workers.worker_id(doomed)
    survivor = workers.start(lease_seconds=LEASE)

    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    at_death = lines_finished(op_id)
    assert at_death == CHUNK
    assert row_count(op_id) == at_death, "the chunk in flight was not committed"

    downtime = wait_until_moving(op_id, since=at_death, timeout=LEASE + 15)
    print(f"death to moving again: {downtime:.2f}s (lease {LEASE}s)")
    wait_for(lambda: op_in_state(op_id, S.COMPLETED), timeout=60, what="completed")
    assert stored_lines(op_id) == list(range(1, 2_001))
    takeover = OperationEvent.objects.filter(operation_id=op_id, detail__startswith="took over").get()
    assert takeover.actor == f"worker:{workers.worker_id(survivor)}"
    assert takeover.detail == "took over (the lease had expired)"
    assert overlapping_chunks(workers.chunk_records()) == []


def test_a_restarted_worker_takes_up_a_rollback_killed_half_way(api, start_upload, workers, gate):
    """I4 for terminate: the rollback is resumable; a worker started after the kill finishes it."""
    held = gate("committed", "rollback")
    first = workers.start(gate=held, lease_seconds=LEASE, LONG_TASK_ROLLBACK_CHUNK_ROWS=200, **CHUNKS)
    op_id = start_upload(csv_bytes(3_000))
    after_two = held.pass_through(op_id, "committed", 1)
    assert api.post("/pause/", {"op_id": op_id}).json()["state"] == S.PAUSING
    held.release(after_two)
    wait_for(lambda: op_in_state(op_id, S.PAUSED), what="paused")
    path = stored_file(op_id)
    before = row_count(op_id)
    assert before == 2 * CHUNK
    assert api.post("/terminate/", {"op_id": op_id}).json()["state"] == S.TERMINATING
    held.wait_held(op_id, "rollback", n=1)  # one rollback chunk of 200 rows committed
    first.send_signal(signal.SIGKILL)
    first.wait()
    left = row_count(op_id)
    assert left == before - 200

    workers.start(lease_seconds=LEASE)
    wait_for(lambda: op_in_state(op_id, S.TERMINATED), timeout=LEASE + 30, what="terminated")
    assert row_count(op_id) == 0
    assert not path.exists()


def stopping(process) -> bool:
    """Whether the worker has handled a first stop signal (it says so in its log)."""
    return "stopping after the current chunk" in Path(process.log_path).read_text(errors="replace")


def test_sigterm_finishes_the_chunk_and_requeues_at_the_checkpoint(start_upload, workers, gate):
    """Graceful stop: SIGTERM during a chunk lets it commit, puts the operation back in the
    queue with its checkpoint and exits; the next worker continues exactly."""
    held = gate("written")
    leaving = workers.start(gate=held, lease_seconds=LEASE, **CHUNKS)
    op_id = start_upload(csv_bytes(2_000))
    in_flight = held.pass_through(op_id, "written", 1)
    before = lines_finished(op_id)

    leaving.send_signal(signal.SIGTERM)
    wait_for(lambda: stopping(leaving), what="the signal handled")
    held.release(in_flight)
    assert leaving.wait(timeout=10) == 0
    op = Operation.objects.get(pk=op_id)
    assert op.state == S.QUEUED and op.lease_owner == ""
    assert op.lines_finished > before, "the chunk in flight was finished, not abandoned"
    assert row_count(op_id) == op.lines_finished
    requeue = OperationEvent.objects.filter(operation_id=op_id, to_state=S.QUEUED).last()
    assert requeue.detail == "worker stopping" and requeue.actor == f"worker:{workers.worker_id(leaving)}"

    workers.start(lease_seconds=LEASE)
    wait_for(lambda: op_in_state(op_id, S.COMPLETED), timeout=60, what="completed")
    assert stored_lines(op_id) == list(range(1, 2_001))


def test_a_second_signal_exits_at_once_and_loses_nothing(start_upload, workers, gate):
    """The second signal leaves the chunk in flight, which the gate holds until the end: only
    the exit can end it."""
    held = gate("written")
    impatient = workers.start(gate=held, lease_seconds=LEASE, **CHUNKS)
    op_id = start_upload(csv_bytes(1_000))
    held.pass_through(op_id, "written", 1)
    impatient.send_signal(signal.SIGINT)
    wait_for(lambda: stopping(impatient), what="the first signal handled")
    impatient.send_signal(signal.SIGINT)
    assert impatient.wait(timeout=10) != 0
    assert row_count(op_id) == lines_finished(op_id) == CHUNK

    workers.start(lease_seconds=LEASE)
    wait_for(lambda: op_in_state(op_id, S.COMPLETED), timeout=LEASE + 30, what="completed")
    assert stored_lines(op_id) == list(range(1, 1_001))


def test_several_workers_share_the_queue_one_worker_per_operation(start_upload, workers, gate):
    """I5: three workers, six operations: they run in parallel, each is processed by one
    worker at a time, and every one ends with its rows exactly once."""
    held = gate("committed")
    for _ in range(3):
        workers.start(gate=held, lease_seconds=LEASE, **CHUNKS)
    op_ids = [start_upload(csv_bytes(1_500)) for _ in range(6)]
    # Each worker holds one operation after its first chunk: three run at once.
    wait_for(lambda: len({a.pid for op_id in op_ids for a in held.arrivals(op_id, "committed")}) == 3, what="3")
    held.open_all()
    for op_id in op_ids:
        wait_for(lambda op_id=op_id: op_in_state(op_id, S.COMPLETED), timeout=120, what="completed")
        assert stored_lines(op_id) == list(range(1, 1_501))
    records = workers.chunk_records()
    assert {record["op"] for record in records} == set(op_ids)
    assert len({record["worker"] for record in records}) == 3, "work was spread over the workers"
    assert overlapping_chunks(records) == []


# --- database faults (PostgreSQL) ------------------------------------------------------------


def _other_backends(action: str = "pid") -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count({action}) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


def _cut_worker_connections() -> int:
    wait_for(_other_backends, what="the worker's connection")
    return _other_backends("pg_terminate_backend(pid)")


def _allow_connections(allow: bool) -> None:
    """ALTER DATABASE ... ALLOW_CONNECTIONS, from the maintenance database (PostgreSQL refuses it
    for the database one is connected to)."""
    db = connection.settings_dict
    with other_session(dbname="postgres") as maintenance:
        maintenance.execute(f'ALTER DATABASE "{db["NAME"]}" ALLOW_CONNECTIONS {str(allow).lower()}')


@postgresql_only
def test_a_cut_connection_is_retried_without_loss(start_upload, workers, gate):
    """Three times, the worker's connection is cut in the middle of a chunk."""
    held = gate("written")
    workers.start(gate=held, lease_seconds=10, **CHUNKS)
    op_id = start_upload(csv_bytes(2_000))
    held.release(held.wait_held(op_id, "written"))
    for _ in range(3):
        in_flight = held.wait_held(op_id, "written")
        assert _cut_worker_connections() >= 1
        held.release(in_flight)
    held.open_all()
    wait_for(lambda: op_in_state(op_id, S.COMPLETED, S.FAILED), timeout=60, what="finished")
    op = Operation.objects.get(pk=op_id)
    assert op.state == S.COMPLETED, op.error
    assert stored_lines(op_id) == list(range(1, 2_001))


@postgresql_only
def test_a_briefly_unavailable_database_is_waited_out(start_upload, workers, gate):
    held = gate("committed")
    workers.start(gate=held, lease_seconds=30, **CHUNKS)
    op_id = start_upload(csv_bytes(2_000))
    held.wait_held(op_id, "committed")
    _allow_connections(False)
    try:
        assert _cut_worker_connections() >= 1
        held.open_all()
        time.sleep(3.0)  # the worker cannot reconnect meanwhile
        assert _other_backends() == 0
        assert op_in_state(op_id, S.RUNNING)
    finally:
        _allow_connections(True)
    wait_for(lambda: op_in_state(op_id, S.COMPLETED, S.FAILED), timeout=60, what="finished")
    op = Operation.objects.get(pk=op_id)
    assert op.state == S.COMPLETED, op.error
    assert stored_lines(op_id) == list(range(1, 2_001))


@postgresql_only
def test_a_lasting_database_error_fails_the_operation_resumably(api, start_upload, workers):
    """Retries are bounded: an error that does not go away ends in `failed` with the error,
    and a resume after the cause is gone completes exactly."""
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION refuse_rows() RETURNS trigger AS $$ BEGIN "
            "IF NEW.line_number > 500 THEN RAISE EXCEPTION 'disk full (simulated)' USING ERRCODE = '53100'; "
            "END IF; RETURN NEW; END $$ LANGUAGE plpgsql"
        )
        cursor.execute(
            "CREATE TRIGGER refuse_rows BEFORE INSERT ON operations_uploadedrow "
            "FOR EACH ROW EXECUTE FUNCTION refuse_rows()"
        )
    try:
        workers.start(lease_seconds=LEASE, LONG_TASK_DB_RETRIES=2)
        op_id = start_upload(csv_bytes(2_000))
        wait_for(lambda: op_in_state(op_id, S.FAILED), timeout=60, what="failed")
        op = Operation.objects.get(pk=op_id)
        assert "disk full (simulated)" in op.error and "3 attempts" in op.error
        assert row_count(op_id) == op.lines_finished <= 500
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TRIGGER refuse_rows ON operations_uploadedrow")
            cursor.execute("DROP FUNCTION refuse_rows()")
    assert api.post("/resume/", {"op_id": op_id}).status_code == 202
    wait_for(lambda: op_in_state(op_id, S.COMPLETED), timeout=60, what="completed")
    assert stored_lines(op_id) == list(range(1, 2_001))


# --- SQLite under contention -----------------------------------------------------------------


@pytest.mark.skipif("connection.vendor != 'sqlite'", reason="SQLite's single writer")
def test_sqlite_control_storm_has_no_lock_errors_and_no_5xx(user, start_upload, workers, media_root, tmp_path):
    """Four clients pause, resume and poll a running import through a real server for several
    seconds: every answer is a deliberate 2xx or 409, nothing is 'database is locked'."""
    token = Token.objects.get_or_create(user=user)[0].key
    workers.start(chunk_delay=0.01, lease_seconds=10)
    op_id = start_upload(csv_bytes(60_000))
    answers: list[int] = []
    problems: list[str] = []

    def client(port: int, seed: int) -> None:
        rng = random.Random(seed)
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            verb = rng.choice(["pause", "resume", "get_status", "get_status"])
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/{verb}/",
                data=json.dumps({"op_id": op_id}).encode(),
                headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    answers.append(response.status)
            except urllib.error.HTTPError as error:
                answers.append(error.code)
                if error.code != 409:
                    problems.append(f"{verb}: {error.code} {error.read()[:200]!r}")
            time.sleep(rng.uniform(0, 0.02))

    with running_server(media_root=media_root, log_path=tmp_path / "web.log") as (_, port):
        threads = [threading.Thread(target=client, args=(port, seed)) for seed in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not problems, problems[:5]
    assert len(answers) > 200 and set(answers) <= {200, 202, 409}
    logs = (tmp_path / "web.log").read_text() + workers.logs()
    assert "database is locked" not in logs

    # Whatever state the storm left it in, it finishes exactly once resumed.
    wait_for(lambda: op_in_state(op_id, S.PAUSED, S.QUEUED, S.RUNNING, S.COMPLETED), what="settled")
    if op_in_state(op_id, S.PAUSED):
        operation_resume(op_id=op_id, actor=Actor("test"))
    wait_for(lambda: op_in_state(op_id, S.COMPLETED), timeout=120, what="completed")
    assert stored_lines(op_id) == list(range(1, 60_001))


def test_ctrl_z_suspends_a_worker_and_fg_continues_it(workers):
    """SIGTSTP keeps its default meaning: django-background-tasks' SignalManager, which our
    worker does not use, used to catch it (and SIGUSR1/2), so Ctrl-Z did nothing."""
    import psutil

    # A group of its own under this process, as a shell's job: a SIGTSTP to a group whose
    # parents are all outside the session (an orphaned group) is discarded by the kernel.
    process = workers.start(own_group=True)
    workers.worker_id(process)  # started: its signal handlers are set
    process.send_signal(signal.SIGTSTP)
    wait_for(lambda: psutil.Process(process.pid).status() == psutil.STATUS_STOPPED, timeout=5, what="stopped")
    process.send_signal(signal.SIGCONT)
    wait_for(lambda: psutil.Process(process.pid).status() != psutil.STATUS_STOPPED, timeout=5, what="continued")
    assert process.poll() is None
