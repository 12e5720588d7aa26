"""PostgreSQL: what wakes a long poll when its operation changes, for a whole web process.

A trigger NOTIFYs one channel with the operation's id whenever its row is updated or deleted
(migration 0006). Each event loop that serves long polls has one Listener: an asyncio task with
a connection of its own that LISTENs on that channel and sets the Event of every long poll
waiting on the id it names. So a waiting long poll holds neither a thread nor a connection and
reads its row only when the row changed, however many wait.

The listener starts with the first long poll of its loop and ends with the loop (asyncio.run
and asgiref cancel what is left on a loop they close; the ASGI application stops it on the
server's shutdown). A connection that breaks (a restart, `pg_terminate_backend`) is made again
with back-off; meanwhile `listening` is false and the long polls read their rows now and then
instead (api/waiting.py). Every long poll is woken once the listener listens again, since what
changed in between was told to no one.
"""

import asyncio
import logging
from contextlib import contextmanager, suppress

import psycopg
from django.db import connections

logger = logging.getLogger(__name__)

CHANNEL = "long_task_operation_changed"
APPLICATION_NAME = "long_task notifications"  # the listener's, in pg_stat_activity
# Back-off between attempts to connect again, from the first to the longest.
RECONNECT_SECONDS = (0.1, 10.0)
# Django's connection parameters that are Python objects for its own (sync) connections.
_DJANGO_ONLY = ("cursor_factory", "context", "prepare_threshold")


def connection_params(application_name: str = APPLICATION_NAME) -> dict:
    """The parameters of the default database, as Django connects to it."""
    params = connections["default"].get_connection_params()
    for name in _DJANGO_ONLY:
        params.pop(name, None)
    params.setdefault("connect_timeout", 10)
    params.setdefault("application_name", application_name)
    return params


class Listener:
    """The LISTENing task of one event loop and the long polls waiting on it."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.waiters: dict[int, set[asyncio.Event]] = {}
        self.listening = False
        self.backend_pid: int | None = None  # of the connection that listens (tests end it)
        self.task = loop.create_task(self._run(), name="long_task notifications")

    @contextmanager
    def watch(self, op_id: int):
        """An Event set whenever the operation's row may have changed, while in the block."""
        event = asyncio.Event()
        self.waiters.setdefault(op_id, set()).add(event)
        try:
            yield event
        finally:
            events = self.waiters.get(op_id, set())
            events.discard(event)
            if not events:
                self.waiters.pop(op_id, None)

    def _wake(self, payload: str) -> None:
        try:
            op_id = int(payload)
        except ValueError:
            return
        for event in self.waiters.get(op_id, ()):
            event.set()

    def _wake_all(self) -> None:
        for events in self.waiters.values():
            for event in events:
                event.set()

    async def _listen(self) -> None:
        async with await psycopg.AsyncConnection.connect(**connection_params(), autocommit=True) as conn:
            await conn.execute(f'LISTEN "{CHANNEL}"')
            self.listening, self.backend_pid = True, conn.info.backend_pid
            self._wake_all()
            async for notify in conn.notifies():
                self._wake(notify.payload)

    async def _run(self) -> None:
        delay = RECONNECT_SECONDS[0]
        while True:
            try:
                await self._listen()
            except (psycopg.Error, OSError) as exc:
                logger.warning("Long polls' notifications: %s; connecting again", exc)
            except Exception:
                logger.exception("Long polls' notifications failed; connecting again")
            finally:
                was_listening, self.listening, self.backend_pid = self.listening, False, None
                self._wake_all()  # to read their rows now and then until listening again
            # A connection that listened for a while is worth trying again at once.
            delay = RECONNECT_SECONDS[0] if was_listening else min(delay * 2, RECONNECT_SECONDS[1])
            await asyncio.sleep(delay)

    async def stop(self) -> None:
        self.task.cancel()
        with suppress(asyncio.CancelledError):
            await self.task


_listeners: dict[asyncio.AbstractEventLoop, Listener] = {}


def listener() -> Listener:
    """The running loop's listener, started if it has none."""
    loop = asyncio.get_running_loop()
    found = _listeners.get(loop)
    if found is None or found.task.done():
        for closed in [other for other in _listeners if other.is_closed()]:
            del _listeners[closed]
        found = _listeners[loop] = Listener(loop)
        found.task.add_done_callback(lambda task: _forget(loop, found))
    return found


def _forget(loop: asyncio.AbstractEventLoop, ended: Listener) -> None:
    if _listeners.get(loop) is ended:
        del _listeners[loop]


async def stop() -> None:
    """End the running loop's listener, if it has one (the server shuts down)."""
    found = _listeners.pop(asyncio.get_running_loop(), None)
    if found is not None:
        await found.stop()
