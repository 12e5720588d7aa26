"""long_task.postgresql: the health check asks the server only when the socket says something
happened, and still finds every connection the server ended."""

import time

import psycopg
import pytest
from django.db import connection

from tests.support import other_session

pytestmark = [
    pytest.mark.skipif("connection.vendor != 'postgresql'", reason="PostgreSQL's backend"),
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def idle_connection():
    """Django's connection, open and idle (autocommit, no transaction)."""
    connection.ensure_connection()
    assert connection.connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    yield connection.connection
    connection.close()


def _statements_sent(raw, monkeypatch) -> list:
    """Record what is run on `raw` from now on (Django's check uses a cursor of it)."""
    sent: list = []
    cursor = raw.cursor

    def counting_cursor(*args, **kwargs):
        sent.append(args)
        return cursor(*args, **kwargs)

    monkeypatch.setattr(raw, "cursor", counting_cursor)
    return sent


def test_a_sound_idle_connection_is_usable_without_a_round_trip(idle_connection, monkeypatch):
    sent = _statements_sent(idle_connection, monkeypatch)
    assert connection.is_usable()
    assert sent == []


def test_a_connection_the_server_ended_is_not_usable(idle_connection):
    pid = idle_connection.info.backend_pid
    with other_session() as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])
    deadline = time.monotonic() + 5
    while connection.is_usable() and time.monotonic() < deadline:
        time.sleep(0.01)  # the server's FATAL message is on its way
    assert not connection.is_usable()
    # And Django's request cycle replaces it: the next query works.
    connection.health_check_done = False
    connection.close_if_health_check_failed()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] != pid


def test_a_connection_with_something_to_read_asks_the_server(idle_connection, monkeypatch):
    """A notification left on the socket (a long poll's LISTEN) is not an ended connection:
    Django's SELECT 1 decides, and says usable."""
    idle_connection.execute('LISTEN "health_check_test"')
    with other_session() as other:
        other.execute('NOTIFY "health_check_test"')
    time.sleep(0.2)
    sent = _statements_sent(idle_connection, monkeypatch)
    assert connection.is_usable()
    assert len(sent) == 1
    idle_connection.execute('UNLISTEN "health_check_test"')


def test_a_connection_in_a_transaction_asks_the_server(idle_connection, monkeypatch):
    idle_connection.execute("BEGIN")
    sent = _statements_sent(idle_connection, monkeypatch)
    assert connection.is_usable()
    assert len(sent) == 1
    idle_connection.execute("ROLLBACK")
