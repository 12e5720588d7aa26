"""On PostgreSQL a waiting long poll is woken by a notification (operations/api/notifications.py):
one listener per event loop, with a connection of its own, wakes the long polls of the operation
a trigger names. Waiting costs no read of the row until it changes; the listener connects again
when its connection is ended, and does not outlive its loop. SQLite polls (tests/api/
test_polling.py covers both)."""

import asyncio
import threading
import time

import pytest
from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.db import connection
from django.test import AsyncClient
from rest_framework.authtoken.models import Token

from bench.long_polls import first_operation, procfile_web_line, production_server
from operations import selectors
from operations.api import notifications
from operations.models import Operation
from tests.support import database_url, other_session, wait_for

S = Operation.State

pytestmark = [
    pytest.mark.processes,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="notifications are PostgreSQL's (SQLite polls)"),
]


@pytest.fixture
def running(user, in_state) -> Operation:
    return in_state(S.RUNNING, owner=user, file_size=100, position=10, lines_finished=1)


@pytest.fixture
def reads(monkeypatch) -> list[int]:
    """The ids of the rows read again by waiting long polls (their only reads once waiting)."""
    read_ids, read = [], selectors.operation_read_again

    def counted(op):
        read_ids.append(op.pk)
        return read(op)

    monkeypatch.setattr(selectors, "operation_read_again", counted)
    return read_ids


def touch(op_id: int) -> None:
    """A change of the row, committed by another connection (as a worker's would be)."""
    with other_session() as session:
        session.execute("UPDATE operations_operation SET updated_at = clock_timestamp() WHERE id = %s", (op_id,))


def listeners() -> list[tuple[int, str]]:
    """(pid, last query) of the listeners' connections to this database."""
    with other_session() as session:
        query = "SELECT pid, query FROM pg_stat_activity WHERE application_name = %s AND datname = current_database()"
        return session.execute(query, (notifications.APPLICATION_NAME,)).fetchall()


def close_connection() -> None:
    connection.close()


async def until(condition, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


class Polls:
    """Long polls of one user, under ASGI (Django's AsyncClient), on the running loop. Each in a
    context of its own, as Django's ASGI handler serves each request: the sync parts of one
    request (sync middleware holds the thread of its context) wait for no other."""

    def __init__(self, user, op: Operation):
        self.client, self.op = AsyncClient(), op
        self.headers = {"Authorization": f"Token {Token.objects.get_or_create(user=user)[0].key}"}

    async def etag(self) -> str:
        return (await self._request(f"/api/operations/{self.op.pk}/", self.headers))["ETag"]

    def start(self, etag: str, seconds: float) -> asyncio.Task:
        url = f"/api/operations/{self.op.pk}/?wait_for_change={seconds}"
        return asyncio.ensure_future(self._request(url, {**self.headers, "If-None-Match": etag}))

    async def _request(self, url: str, headers: dict):
        async with ThreadSensitiveContext():
            try:
                return await self.client.get(url, headers=headers)
            finally:
                await sync_to_async(close_connection)()  # the one of the context's thread

    def waiting(self) -> int:
        return len(notifications.listener().waiters.get(self.op.pk, ()))


@pytest.mark.django_db(transaction=True)
def test_waiting_long_polls_read_the_row_once_however_long_they_wait_and_again_when_it_changes(
    user, running, reads, settings
):
    """Reading the row every 0.1 s, eight long polls of 2 s read it about 160 times."""
    settings.LONG_TASK_MAX_WAITS_PER_USER = 8
    polls = Polls(user, running)

    async def main():
        listener = notifications.listener()
        await until(lambda: listener.listening, "the listener")
        etag = await polls.etag()
        unchanged = [polls.start(etag, 2) for _ in range(8)]
        answers = await asyncio.gather(*unchanged)
        assert [answer.status_code for answer in answers] == [304] * 8
        assert len(reads) <= 8, reads  # each once when it starts waiting, none while it waits

        reads.clear()
        waiting = [polls.start(etag, 30) for _ in range(8)]
        await until(lambda: polls.waiting() == 8 and len(reads) == 8, "eight long polls waiting")
        touch(running.pk)
        answers = await asyncio.gather(*waiting)
        assert [answer.status_code for answer in answers] == [200] * 8
        assert {answer["ETag"] for answer in answers} != {etag}
        assert len(reads) == 16  # once more each, when told

    asyncio.run(main())


@pytest.mark.django_db(transaction=True)
def test_a_long_poll_on_an_operation_deleted_meanwhile_is_told_at_once(user, running, reads):
    polls = Polls(user, running)

    async def main():
        etag = await polls.etag()
        poll = polls.start(etag, 30)
        await until(lambda: polls.waiting() == 1 and reads, "the long poll waiting")
        with other_session() as session:
            session.execute("DELETE FROM operations_operation WHERE id = %s", (running.pk,))
        started = time.monotonic()
        assert (await poll).status_code == 404
        assert time.monotonic() - started < 15  # told, not at the end of its 30 s

    asyncio.run(main())


@pytest.mark.django_db(transaction=True)
def test_the_listener_connects_again_when_its_connection_is_ended_and_long_polls_still_get_the_change(
    user, running, reads
):
    polls = Polls(user, running)

    async def main():
        listener = notifications.listener()
        await until(lambda: listener.listening, "the listener")
        ended = listener.backend_pid
        etag = await polls.etag()
        poll = polls.start(etag, 30)
        await until(lambda: polls.waiting() == 1 and reads, "the long poll waiting")
        with other_session() as session:
            assert session.execute("SELECT pg_terminate_backend(%s)", (ended,)).fetchone() == (True,)
        touch(running.pk)  # while the listener may be away: nobody hears of it
        answer = await poll
        assert answer.status_code == 200 and answer["ETag"] != etag

        await until(lambda: listener.listening and listener.backend_pid not in (None, ended), "listening again")
        assert not listener.task.done()
        etag = answer["ETag"]
        reads.clear()
        poll = polls.start(etag, 30)
        await until(lambda: polls.waiting() == 1 and reads, "another long poll waiting")
        touch(running.pk)
        again = await poll
        assert again.status_code == 200 and again["ETag"] != etag
        assert len(reads) == 2

    asyncio.run(main())


@pytest.mark.django_db(transaction=True)
def test_the_listener_ends_with_its_event_loop(user, running):
    polls = Polls(user, running)

    async def main():
        await polls.start(await polls.etag(), 0.2)
        listener = notifications.listener()
        await until(lambda: listener.listening, "the listener")
        return listener

    listener = asyncio.run(main())
    assert listener.task.cancelled() and not listener.listening
    wait_for(lambda: not listeners(), timeout=20, what="the listener's connection closed")
    assert listener.loop not in notifications._listeners


@pytest.mark.django_db(transaction=True)
def test_a_long_poll_to_the_procfile_server_answers_when_another_connection_changes_the_row():
    env = {"LONG_TASK_MAX_WAIT_SECONDS": "60", "LONG_TASK_CACHE_URL": "db"}
    with production_server(procfile_web_line(), database_url=database_url(), **env) as server:
        try:
            op_id = first_operation(server, "poller")
            path = f"/api/operations/{op_id}/"
            etag = server.request("poller", path)[1]["ETag"]
            answers = []

            def poll():
                started = time.monotonic()
                status, headers, _ = server.request("poller", f"{path}?wait_for_change=60", etag=etag, timeout=90)
                answers.append((status, headers["ETag"], time.monotonic() - started))

            thread = threading.Thread(target=poll)
            thread.start()
            with other_session() as session:
                query = "SELECT count(*) FROM long_task_cache WHERE cache_key LIKE '%long-task:waits:%'"
                wait_for(lambda: session.execute(query).fetchone()[0] == 1, timeout=20, what="the long poll waiting")
            wait_for(
                lambda: [query for _, query in listeners() if notifications.CHANNEL in query],
                timeout=20,
                what="a listener in the server",
            )
            touch(op_id)
            thread.join(timeout=90)
            [(status, new_etag, took)] = answers
            assert status == 200 and new_etag != etag
            assert took < 30, f"answered after {took:.1f}s of its 60"
        finally:
            with other_session() as session:
                session.execute("DROP TABLE IF EXISTS long_task_cache")
