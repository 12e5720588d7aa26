"""The worker loop: claim an operation, work it chunk by chunk, stop when told.

Each chunk is one transaction that writes the chunk's rows and the checkpoint together, and
renews the lease with a conditional UPDATE that fails when the operation was paused or
terminated meanwhile, or taken by another worker. Then the whole chunk rolls back (I1, I2, I5).
A killed worker leaves at most an uncommitted chunk behind; its lease expires and any live
worker's recovery sweep continues from the checkpoint (I4). On PostgreSQL a pause or terminate
request does not wait for the checkpoint: it cancels the chunk's statement at once
(stop_requests.py), and the chunk rolls back as it would have there.

Extension points, as Django signals sent by `Runner` (a send nobody listens to costs a lookup):

- `chunk_written(op, chunk)`: inside the chunk's transaction, after its rows are written and
  before its checkpoint: a receiver that raises rolls the chunk back;
- `chunk_committed(op, chunk)`: after the chunk and its checkpoint committed;
- `rollback_chunk_committed(op, position)`: after a chunk of a terminate's rollback committed,
  everything up to `position` deleted.

They are for instrumentation and for tests, which hold a worker at a chunk boundary with them;
a receiver runs in the worker, in the chunk's time.
"""

import logging
import os
import secrets
import socket
import threading
import time

from django.conf import settings
from django.db import DatabaseError, Error, InterfaceError, OperationalError, connection, transaction
from django.dispatch import Signal

from operations import heartbeats, leases, selectors, stop_requests
from operations.errors import LeaseLost, OperationError
from operations.models import Operation
from operations.operation_types import registry
from operations.operation_types.base import Chunk, Job, Progress

logger = logging.getLogger(__name__)
State = Operation.State

_stop = threading.Event()
_identity: tuple[int, str] | None = None
STOPPING = "worker stopping"

chunk_written = Signal()
chunk_committed = Signal()
rollback_chunk_committed = Signal()


def worker_id() -> str:
    """This process's identity in leases and events: unique across machines and restarts, and
    opaque (host names and PIDs are for the log, where `worker_id` is printed beside them)."""
    global _identity
    if _identity is None or _identity[0] != os.getpid():
        _identity = (os.getpid(), secrets.token_hex(6))
        logger.info("worker %s is process %s on %s", _identity[1], os.getpid(), socket.gethostname())
    return _identity[1]


def request_stop() -> None:
    """Ask the worker to give back its operation at the next chunk boundary and exit."""
    _stop.set()


def stop_requested() -> bool:
    return _stop.is_set()


def wait_for_stop(seconds: float) -> bool:
    """Sleep up to `seconds`, waking at once when a stop is requested."""
    return _stop.wait(seconds)


class ChunkSizer:
    """Sizes chunks by time, not count: each chunk aims at `target` seconds of work, which
    bounds how long a pause waits for the worker and keeps the per-chunk overhead small."""

    def __init__(self, *, target: float, initial: int = 500, minimum: int = 20, maximum: int = 200_000):
        self.target, self.minimum, self.maximum = target, min(minimum, maximum), maximum
        self.size = min(initial, maximum)

    def observe(self, rows: int, seconds: float) -> None:
        if rows < self.size or seconds <= 0:
            return  # a short chunk (end of file) says nothing about the speed
        ideal = rows * self.target / seconds
        # Move half way, at most doubling: one slow chunk (a checkpoint, a lock wait) should
        # not swing the size.
        self.size = int(max(self.minimum, min(self.maximum, 2 * self.size, (self.size + ideal) / 2)))


def _commits_wait_for_disk(wait: bool, *, local: bool = False) -> None:
    """PostgreSQL's synchronous_commit for this connection (local: this transaction only).

    The chunks commit without waiting for the WAL flush: each commit would otherwise wait for a
    disk write (longer than the chunk's own work when neighbours write), with both the worker and its
    backend idle. Nothing of exactness is lost: a commit stays atomic and in WAL order, so a
    crash of the database server can only lose the last chunks whole (rows and checkpoint
    together), and the operation redoes them from the checkpoint that survived; a later
    synchronous commit (a pause request, the completion) makes every earlier one durable first."""
    if connection.vendor != "postgresql":
        return
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"SET {'LOCAL ' if local else ''}synchronous_commit TO {'ON' if wait else 'OFF'}")
    except Error:
        if not wait or local:
            raise
        # Restoring it on a broken connection: the error being handled is the one that matters,
        # and the connection is closed and made anew.


def smoothed_rate(previous: float | None, rows: int, seconds: float) -> float:
    """Rows per second, smoothed over chunks (the last chunk weighs 30%) so that one slow
    chunk does not make the ETA jump."""
    rate = rows / max(seconds, 1e-6)
    return round(rate if not previous else 0.7 * previous + 0.3 * rate, 1)


def work_operation(op_id: int) -> None:
    """Work `op_id` now, in this process, if it needs a worker and nobody else holds it."""
    me = worker_id()
    try:
        op = leases.operation_claim(op_id=op_id, worker_id=me)
    except (OperationalError, InterfaceError) as exc:
        # Nothing is claimed; the operation stays queued and recovery picks it up.
        logger.warning("claim of operation %s failed: %s", op_id, exc)
        connection.close()
        return
    if op is None:
        return
    logger.info("operation %s: %s claimed it in state %s", op_id, me, op.state)
    beat = heartbeats.for_worker(me)
    _report(beat.holding, op)
    try:
        with stop_requests.for_this_process().working_on(op.pk):
            Runner(op, me).run()
    finally:
        _report(beat.done, op)


def _report(report, op: Operation) -> None:
    """A heartbeat outside a chunk: what the dashboard shows, never a reason to stop working."""
    try:
        report(op)
    except DatabaseError as exc:
        logger.warning("operation %s: heartbeat not recorded: %s", op.pk, exc)
        connection.close()


def recover_stalled() -> int:
    """Take up operations whose worker died (lease expired) or whose queue task was lost."""
    worked = 0
    for op_id in selectors.operations_stalled():
        if stop_requested():
            break
        work_operation(op_id)
        worked += 1
    return worked


class Runner:
    """One worker's run of one operation it holds the lease on."""

    def __init__(self, op: Operation, worker: str):
        self.op = op
        self.worker = worker
        self.op_type = registry.get(op.op_type)
        # Doubling at most, the sizer is at its pace within a few chunks of a small first one.
        self.sizer = ChunkSizer(
            target=settings.LONG_TASK_CHUNK_SECONDS,
            initial=settings.LONG_TASK_FIRST_CHUNK_ROWS,
            maximum=settings.LONG_TASK_CHUNK_ROWS,
        )
        self.db_failures = 0
        self.heartbeat = heartbeats.for_worker(worker)
        self.stops = stop_requests.for_this_process()

    def run(self) -> None:
        while True:
            try:
                self._dispatch()
                return
            except LeaseLost as exc:
                logger.info("operation %s: stopped, %s", self.op.pk, exc)
                return
            except (OperationalError, InterfaceError) as exc:
                # The connection was cut or the database is briefly away: nothing of the
                # failed chunk committed, so start again from the checkpoint after a pause.
                self.db_failures += 1
                connection.close()
                if self.db_failures > settings.LONG_TASK_DB_RETRIES:
                    self._fail(f"database error, {self.db_failures} attempts: {exc}")
                    return
                delay = min(10.0, 0.5 * 2 ** (self.db_failures - 1))
                logger.warning("operation %s: database error (%s), retrying in %.1fs", self.op.pk, exc, delay)
                if wait_for_stop(delay):
                    return  # the lease expires and another worker continues
            except OperationError as exc:
                # The type refused its input (e.g. the stored file is gone): the user's message.
                logger.warning("operation %s failed: %s", self.op.pk, exc.message)
                self._fail(exc.message)
                return
            except Exception as exc:
                # A bug or an environment problem: the traceback goes to the log, the user
                # reads what happened without the server's internals.
                logger.exception("operation %s failed", self.op.pk)
                self._fail(f"internal error ({type(exc).__name__}); the worker's log has the details")
                return

    def _dispatch(self) -> None:
        """Do what the operation's current state asks of the lease holder, until done."""
        while True:
            self.op.refresh_from_db()
            if self.op.lease_owner != self.worker:
                raise LeaseLost(f"held by {self.op.lease_owner or 'nobody'}")
            if self.op.state == State.RUNNING:
                if not self._import():
                    return
            elif self.op.state == State.PAUSING:
                detail = f"stopped at {self.op_type.describe_checkpoint(self.op)}"
                leases.operation_ack_pause(op_id=self.op.pk, worker_id=self.worker, detail=detail)
                return
            elif self.op.state == State.TERMINATING:
                self._rollback()
                return
            else:
                return

    def _release(self) -> None:
        """A stop was asked for (SIGTERM, Ctrl-C): give the operation back at its checkpoint."""
        leases.operation_release(op_id=self.op.pk, worker_id=self.worker, detail=STOPPING)

    def _import(self) -> bool:
        """Commit chunks until the end, a stop, or a state change. True: look at the state again."""
        job = self.op_type.open(self.op)
        # SQLite has one writer at a time: read the chunk before taking the write lock, so that
        # a pause request waits for the writes only. Elsewhere reading streams into the writes.
        prepare_first = connection.vendor == "sqlite"
        try:
            _commits_wait_for_disk(False)
            while True:
                if stop_requested():
                    self._release()
                    return False
                if self.stops.requested():
                    return True  # a pause or terminate came between chunks: begin none
                self.sizer.target = stop_requests.chunk_seconds(job)
                started = time.monotonic()
                chunk = job.read_chunk(max_rows=self.sizer.size)
                if prepare_first:
                    chunk.prepare()
                # SQLite: a pause may have come while the chunk was read; don't take the write lock.
                # (PostgreSQL reads while it writes: this would only cost a round trip per chunk.)
                if prepare_first and not leases.operation_is_held(op_id=self.op.pk, worker_id=self.worker):
                    return True  # paused, terminated or taken over since the last chunk: write nothing
                progress = self._commit_chunk(job, chunk, started)
                if progress is None:
                    return True  # paused, terminated or taken over: the chunk rolled back
                self.db_failures = 0
                self.sizer.observe(chunk.units, time.monotonic() - started)
                chunk_committed.send(Runner, op=self.op, chunk=chunk)
                if progress.error:
                    self._fail(progress.error)
                    return False
                if progress.finished:
                    logger.info("operation %s: completed", self.op.pk)
                    return False
        finally:
            job.close()
            _commits_wait_for_disk(True)

    def _commit_chunk(self, job: Job, chunk: Chunk, started: float) -> Progress | None:
        """Write the chunk and its checkpoint in one transaction; None: it rolled back, because
        the operation was paused, terminated or taken over meanwhile."""
        try:
            with transaction.atomic(), self.stops.during_chunk():
                job.write_chunk(chunk)
                chunk_written.send(Runner, op=self.op, chunk=chunk)
                progress = chunk.progress
                if progress.finished:
                    _commits_wait_for_disk(True, local=True)  # the completion is durable
                rate = smoothed_rate(self.op.rows_per_second, chunk.units, time.monotonic() - started)
                leases.operation_checkpoint(
                    op=self.op, worker_id=self.worker, fields={**progress.checkpoint, "rows_per_second": rate}
                )
                self.heartbeat.progressed(self.op, chunk.units)
                if progress.finished and not progress.error:
                    leases.operation_complete(op_id=self.op.pk, worker_id=self.worker)
                return progress
        except LeaseLost:
            return None
        except Exception as exc:
            if not self.stops.cancelled:
                raise
            # What a cancelled statement raises, or a later one of the failed transaction.
            logger.info("operation %s: a stop request cancelled the chunk (%s)", self.op.pk, type(exc).__name__)
            return None
        finally:
            if self.stops.in_doubt():
                connection.close()  # a cancel may still come: none must reach what follows

    def _rollback(self) -> None:
        """Delete what the operation wrote, chunk by chunk (resumable), then its file."""
        # Deleting by primary-key range runs at about a million rows a second: start big.
        sizer = ChunkSizer(
            target=settings.LONG_TASK_ROLLBACK_CHUNK_SECONDS,
            initial=50_000,
            maximum=settings.LONG_TASK_ROLLBACK_CHUNK_ROWS,
        )
        while not self.op_type.rollback_done(self.op):
            if stop_requested():
                self._release()
                return
            started = time.monotonic()
            before = self.op.rollback_position
            with transaction.atomic():
                rolled_back_to = self.op_type.rollback_chunk(self.op, max_rows=sizer.size)
                leases.operation_checkpoint(
                    op=self.op,
                    worker_id=self.worker,
                    state=State.TERMINATING,
                    fields={"rollback_position": rolled_back_to},
                )
                self.heartbeat.progressed(self.op, 0)  # seen; a rollback's deletions are no throughput
            self.db_failures = 0
            sizer.observe(rolled_back_to - before, time.monotonic() - started)
            rollback_chunk_committed.send(Runner, op=self.op, position=rolled_back_to)
        self.op_type.delete_input(self.op)
        with transaction.atomic():
            kept = self.op_type.rollback_rest(self.op)
            leases.operation_finish_terminate(op_id=self.op.pk, worker_id=self.worker, fields=kept)
        logger.info("operation %s: terminated, rolled back", self.op.pk)

    def _fail(self, error: str) -> None:
        try:
            leases.operation_fail(op_id=self.op.pk, worker_id=self.worker, error=error)
        except Exception as exc:  # the database is gone or the lease too: recovery will retry
            logger.warning("operation %s: could not record the failure: %s", self.op.pk, exc)
