import json
import os
import time
from collections import Counter
from pathlib import Path

from django.apps import AppConfig
from django.db import transaction


class WorkerHooksConfig(AppConfig):
    name = "tests.worker_hooks"

    def ready(self) -> None:
        from operations import worker

        # The log first: a chunk held at `written` is in flight from its writes on.
        log_dir = os.environ.get("LONG_TASK_TEST_CHUNK_LOG")
        if log_dir:
            worker.chunk_written.connect(ChunkLog(Path(log_dir)).on_written, weak=False, dispatch_uid="chunk-log")
        gate_dir = os.environ.get("LONG_TASK_TEST_GATE")
        if gate_dir:
            gate = Holder(Path(gate_dir), os.environ.get("LONG_TASK_TEST_GATE_HOLD", "").split(","))
            worker.chunk_written.connect(gate.on_written, weak=False, dispatch_uid="gate-written")
            worker.chunk_committed.connect(gate.on_committed, weak=False, dispatch_uid="gate-committed")
            worker.rollback_chunk_committed.connect(gate.on_rollback, weak=False, dispatch_uid="gate-rollback")
        stall_dir = os.environ.get("LONG_TASK_TEST_STALL")
        if stall_dir:
            worker.chunk_written.connect(Staller(Path(stall_dir)).on_written, weak=False, dispatch_uid="stall")
        delay = float(os.environ.get("LONG_TASK_TEST_CHUNK_DELAY") or 0)
        if delay:
            worker.chunk_written.connect(lambda **_: time.sleep(delay), weak=False, dispatch_uid="chunk-delay")


class Holder:
    """The worker's side of tests/gate.py."""

    def __init__(self, directory: Path, points: list[str]):
        self.directory, self.points = directory, set(points)
        self.counts: Counter = Counter()

    def _at(self, point: str, op) -> None:
        from tests.gate import Arrival, hold

        self.counts[op.pk, point] += 1
        if point in self.points:
            hold(self.directory, Arrival(op.pk, point, self.counts[op.pk, point], os.getpid()))

    def on_written(self, op, **_) -> None:
        self._at("written", op)

    def on_committed(self, op, **_) -> None:
        self._at("committed", op)

    def on_rollback(self, op, **_) -> None:
        self._at("rollback", op)


class Staller:
    """Holds each operation's first chunk in this process inside a database statement that
    would run for an hour (PostgreSQL's pg_sleep; a minute at most, by a statement timeout),
    after touching `<op>.stalled`: only a cancel of the statement ends that chunk soon."""

    def __init__(self, directory: Path):
        self.directory, self.stalled = directory, set()

    def on_written(self, op, **_) -> None:
        from django.db import connection

        if op.pk in self.stalled:
            return
        self.stalled.add(op.pk)
        (self.directory / f"{op.pk}.stalled").touch()
        with connection.cursor() as cursor:
            # Bounded all the same: a test that fails must not leave the statement holding its
            # locks (the test database's flush waits for them) for the hour.
            cursor.execute("SET LOCAL statement_timeout = '60s'")
            cursor.execute("SELECT pg_sleep(3600)")


class ChunkLog:
    def __init__(self, directory: Path):
        self.directory = directory

    def on_written(self, op, chunk, **_) -> None:
        from operations import worker

        if not chunk.units:
            return
        record = {
            "op": op.pk,
            "worker": worker.worker_id(),
            "first": chunk.first_line if hasattr(chunk, "first_line") else chunk.after + 1,
            "last": chunk.progress.checkpoint["lines_finished"],
            "start": time.time(),
        }
        transaction.on_commit(lambda: self._append({**record, "end": time.time()}))

    def _append(self, record: dict) -> None:
        with open(self.directory / f"{os.getpid()}.jsonl", "a") as log:
            log.write(json.dumps(record) + "\n")
