"""What a worker process says about itself, for the console's dashboard: who it is (host, pid,
since when), when it was last seen, which operation it works on, and how many rows it processed
(samples every few seconds, which the throughput chart adds up by minute).

Cheap by design: a worker writes at most once every HEARTBEAT_SECONDS while it works (one
UPDATE of its own row and one INSERT of a sample, inside the chunk's transaction that commits
anyway) and as often while idle (its loop's sleep). When it started and was last seen are the
database's clock, as leases' expiries are; a sample's minute is the worker's own clock, which
at a minute's resolution need not agree with the others to the second. Rows of workers silent
for FORGET_SECONDS, and samples older than SAMPLES_KEPT_SECONDS, are pruned by the workers
themselves (`prune`, from their idle loop).
"""

import os
import socket
import time
from collections.abc import Callable
from datetime import timedelta

from django.db.models.functions import Now

from operations.models import Operation, ThroughputSample, WorkerProcess

HEARTBEAT_SECONDS = 5.0
# A worker not seen for this long is gone (killed, cut off): its row is deleted.
FORGET_SECONDS = 600
# The chart shows the last hour; an hour more is kept.
SAMPLES_KEPT_SECONDS = 2 * 3600


def current_minute() -> int:
    """Minutes since the epoch: the chart's buckets."""
    return int(time.time() // 60)


class Heartbeat:
    """One worker process's reports (one instance per process: `for_worker`)."""

    def __init__(self, worker_id: str, *, clock: Callable[[], float] = time.monotonic):
        self.worker_id = worker_id
        self.clock = clock
        self.last_beat = -HEARTBEAT_SECONDS
        self.pending_rows = 0
        self.pending_since = clock()
        self.operation_id: int | None = None
        # The first chunk of an operation is sampled at once: the dashboard shows it moving.
        self.first_chunk = True

    def started(self) -> None:
        """The worker begins its loop: its row, anew."""
        WorkerProcess.objects.update_or_create(
            worker_id=self.worker_id,
            defaults={
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "started_at": Now(),
                "last_seen": Now(),
                "operation": None,
            },
        )
        self.last_beat = self.clock()

    def stopped(self) -> None:
        WorkerProcess.objects.filter(worker_id=self.worker_id).delete()

    def idle(self) -> None:
        """Between tasks: seen, holding nothing (at most every HEARTBEAT_SECONDS)."""
        if self.clock() - self.last_beat >= HEARTBEAT_SECONDS:
            self._beat(operation_id=None)

    def holding(self, op: Operation) -> None:
        """It claimed `op`: the dashboard shows it at once."""
        self.pending_rows, self.pending_since = 0, self.clock()
        self.first_chunk = True
        self._beat(operation_id=op.pk)

    def progressed(self, op: Operation, rows: int) -> None:
        """A chunk of `rows` is being committed (called inside its transaction): a sample and a
        beat when HEARTBEAT_SECONDS have passed since the last one, or at the first chunk."""
        self.pending_rows += rows
        if self.first_chunk or self.clock() - self.last_beat >= HEARTBEAT_SECONDS:
            self.first_chunk = False
            self._flush(op.pk)
            self._beat(operation_id=op.pk)

    def done(self, op: Operation) -> None:
        """It let go of `op` (finished, paused, failed, gave it back): the rows not yet sampled,
        and holding nothing."""
        self._flush(op.pk)
        self._beat(operation_id=None)

    def _flush(self, op_id: int) -> None:
        if self.pending_rows:
            seconds = max(self.clock() - self.pending_since, 0.001)
            ThroughputSample.objects.create(
                minute=current_minute(),
                rows=self.pending_rows,
                seconds=seconds,
                worker_id=self.worker_id,
                operation_id=op_id,
            )
        self.pending_rows, self.pending_since = 0, self.clock()

    def _beat(self, *, operation_id: int | None) -> None:
        updated = WorkerProcess.objects.filter(worker_id=self.worker_id).update(
            last_seen=Now(), operation_id=operation_id
        )
        if not updated:
            # Pruned while it was silent (e.g. held in a debugger), or never started: anew.
            self.started()
            WorkerProcess.objects.filter(worker_id=self.worker_id).update(operation_id=operation_id)
        self.operation_id = operation_id
        self.last_beat = self.clock()


_heartbeat: Heartbeat | None = None


def for_worker(worker_id: str) -> Heartbeat:
    """This process's Heartbeat (a new one after a fork: the worker's id changes with its pid)."""
    global _heartbeat
    if _heartbeat is None or _heartbeat.worker_id != worker_id:
        _heartbeat = Heartbeat(worker_id)
    return _heartbeat


def prune() -> tuple[int, int]:
    """Delete the rows of workers silent for FORGET_SECONDS and the samples past their time."""
    workers, _ = WorkerProcess.objects.filter(last_seen__lt=Now() - timedelta(seconds=FORGET_SECONDS)).delete()
    oldest = current_minute() - SAMPLES_KEPT_SECONDS // 60
    samples, _ = ThroughputSample.objects.filter(minute__lt=oldest).delete()
    return workers, samples
