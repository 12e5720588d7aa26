"""PostgreSQL: a pause or a terminate takes effect inside the chunk it finds, not at its end.

A trigger NOTIFYs `long_task_stop_requested` with the operation's id when its state becomes
pausing or terminating (migration 0010). A worker process that `listen()`s keeps a thread with a
connection of its own LISTENing on that channel. When the notice names the operation whose
chunk the worker is writing (`StopRequests.during_chunk`), the thread cancels the statement
that the worker's connection runs, as psql's Ctrl-C does: the chunk rolls back at once, as it
would at its checkpoint anyway (the request committed first, so the checkpoint's conditional
UPDATE would fail, I2), and the worker looks at the operation's state again. A chunk whose
statements run long (a big table's index, a neighbour on the disk) no longer decides how long
a pause waits.

The server drops a cancel that comes between two statements, and keeps the error of a
cancelled COPY until the client ends it: so the worker's loops that read rows in Python ask
`check_chunk()` and give up the chunk themselves, and the cancel is sent again every few
milliseconds until the chunk has ended, for a bounded time. A notice that comes between chunks
is kept, and the next chunk is not begun (`requested`). The cancels are sent under the lock
that ends a chunk, each for the chunk the notice found, so none reaches a statement after it
(a commit, the acknowledgement, another chunk); one that timed out may still arrive, and the
worker then drops its connection after the chunk (`in_doubt`).

Where nothing listens (SQLite, a worker run in-process, a listener whose connection broke and
is made again) a request takes effect at the chunk's checkpoint, as it always did.
"""

import logging
import os
import threading
import time
from contextlib import contextmanager, nullcontext

from django.conf import settings
from django.db import connection

# psycopg is imported where it is used: a worker on SQLite would carry it (and libpq) for nothing.

logger = logging.getLogger(__name__)

CHANNEL = "long_task_stop_requested"
APPLICATION_NAME = "long_task stop requests"  # the listener's, in pg_stat_activity
RESEND_SECONDS = 0.005
# A cancel is sent again for at most this long: a chunk spends far less between two statements,
# and a worker held in Python (a test's gate) must not get a cancel request every few ms.
RESEND_FOR_SECONDS = 1.0


class ChunkCancelled(Exception):
    """A pause or terminate request cancelled the chunk being written."""


class StopRequests:
    """One worker process's listener (see the module)."""

    def __init__(self, *, listen: bool = True):
        """`listen`: start the listening thread (a test drives `_notified` itself)."""
        self._lock = threading.Lock()
        self._op_id: int | None = None  # the operation this process works on
        self._chunk_connection = None  # psycopg's, while a chunk of the operation is written
        self._chunk = 0  # counts the chunks: a notice's cancels are for the chunk it found
        self._chunk_ended = threading.Event()
        self._pending = False  # a request for `_op_id` came between its chunks
        self.cancelled = False  # a cancel was sent during the current (or last) chunk
        self._in_doubt = False  # a cancel failed or timed out: it may still reach the connection
        self.listening = False
        if listen:
            threading.Thread(target=self._run, name="long_task stop requests", daemon=True).start()

    # --- the worker's side ---

    @contextmanager
    def working_on(self, op_id: int):
        """The worker runs `op_id` in the block: requests for it count, earlier ones do not."""
        with self._lock:
            self._op_id, self._pending = op_id, False
        try:
            yield
        finally:
            with self._lock:
                self._op_id, self._pending = None, False

    def requested(self) -> bool:
        """A pause or terminate of the operation came since the last look (between chunks)."""
        with self._lock:
            found, self._pending = self._pending, False
        return found

    @contextmanager
    def during_chunk(self):
        """The block writes a chunk of the operation, inside its transaction: a request for it
        cancels the connection's statement. When the block is left, no cancel is on its way
        (unless `in_doubt`)."""
        self.cancelled = False
        connection.ensure_connection()
        with self._lock:
            if self._pending:  # came since `requested()` was asked
                self._pending, self.cancelled = False, True
                raise ChunkCancelled
            self._chunk_connection, self._chunk = connection.connection, self._chunk + 1
            self._chunk_ended.clear()
        try:
            yield
        finally:
            with self._lock:
                self._chunk_connection = None
                self._chunk_ended.set()

    def in_doubt(self) -> bool:
        """A cancel of the last chunk may still reach its connection (asked once)."""
        with self._lock:
            found, self._in_doubt = self._in_doubt, False
        return found

    # --- the listener's side ---

    def _notified(self, payload: str) -> None:
        try:
            op_id = int(payload)
        except ValueError:
            return
        with self._lock:
            if op_id != self._op_id:
                return
            if self._chunk_connection is None:
                self._pending = True
                return
            chunk = self._chunk
        self._cancel_chunk(chunk)

    def _cancel_chunk(self, chunk: int) -> None:
        """Cancel that chunk's statements until it ends (or RESEND_FOR_SECONDS pass)."""
        import psycopg

        until = time.monotonic() + RESEND_FOR_SECONDS
        while time.monotonic() < until:
            with self._lock:
                if self._chunk_connection is None or self._chunk != chunk:
                    return
                self.cancelled = True
                try:
                    self._chunk_connection.cancel_safe(timeout=2.0)
                except psycopg.Error as exc:
                    self._in_doubt = True
                    logger.warning("stop request: cancel failed: %s", exc)
                    return
            if self._chunk_ended.wait(RESEND_SECONDS):
                return

    def _listen(self) -> None:
        import psycopg

        from operations.api.notifications import connection_params

        with psycopg.connect(**connection_params(APPLICATION_NAME), autocommit=True) as listener:
            listener.execute(f'LISTEN "{CHANNEL}"')
            self.listening = True
            for notice in listener.notifies():
                self._notified(notice.payload)

    def _run(self) -> None:
        import psycopg

        from operations.api.notifications import RECONNECT_SECONDS

        delay = RECONNECT_SECONDS[0]
        while True:
            try:
                self._listen()
            except (psycopg.Error, OSError) as exc:
                logger.warning("stop requests: %s; connecting again", exc)
            except Exception:
                logger.exception("stop requests failed; connecting again")
            finally:
                was_listening, self.listening = self.listening, False
            delay = RECONNECT_SECONDS[0] if was_listening else min(delay * 2, RECONNECT_SECONDS[1])
            time.sleep(delay)


class _Unheard:
    """Where nothing listens: every request takes effect at the chunk's checkpoint."""

    cancelled = False

    def working_on(self, op_id: int):
        return nullcontext()

    def requested(self) -> bool:
        return False

    def during_chunk(self):
        return nullcontext()

    def in_doubt(self) -> bool:
        return False


_listener: tuple[int, StopRequests] | None = None  # the process that started it, and it


def _this_process() -> StopRequests | None:
    """The listener this process started, if any (a forked child has none of its own)."""
    return _listener[1] if _listener is not None and _listener[0] == os.getpid() else None


def listen() -> None:
    """Start this worker process's listener (PostgreSQL only; once a process)."""
    global _listener
    if connection.vendor == "postgresql" and _this_process() is None:
        _listener = (os.getpid(), StopRequests())


def chunk_seconds(job) -> float:
    """How long a chunk of `job` should take. Where a request reaches the chunk in flight (this
    process listens, and the job gives a cancelled chunk up: `Job.stops_mid_chunk`), a pause
    does not wait for the chunk: LONG_TASK_CANCELLABLE_CHUNK_SECONDS, longer, so that the
    chunks' commits and statements cost less of the import. Elsewhere the chunk's length is
    what a pause waits for: LONG_TASK_CHUNK_SECONDS."""
    listener = _this_process()
    if job.stops_mid_chunk and listener is not None and listener.listening:
        return settings.LONG_TASK_CANCELLABLE_CHUNK_SECONDS
    return settings.LONG_TASK_CHUNK_SECONDS


def check_chunk() -> None:
    """Raise ChunkCancelled if a request cancelled the chunk this process is writing: for the
    loops that read a chunk's rows in Python, which a cancel does not reach."""
    listener = _this_process()
    if listener is not None and listener.cancelled:
        raise ChunkCancelled


def for_this_process() -> StopRequests | _Unheard:
    """The listener `listen()` started in this process, else one that hears nothing."""
    return _this_process() or _Unheard()
