"""PostgreSQL runs on Django's own backend, with its health check on (CONN_HEALTH_CHECKS): a kept
connection the server ended (a restart, `pg_terminate_backend`, a timeout) is replaced before
the next request's first query."""

import psycopg
import pytest
from django.conf import settings
from django.db import connection

from tests.support import other_session

pytestmark = [
    pytest.mark.skipif("connection.vendor != 'postgresql'", reason="PostgreSQL's backend"),
    pytest.mark.django_db(transaction=True),
]


def test_the_backend_is_djangos_with_health_checks():
    assert settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
    assert settings.DATABASES["default"]["CONN_HEALTH_CHECKS"] is True


def test_a_connection_the_server_ended_is_replaced_by_the_next_request():
    connection.ensure_connection()
    raw = connection.connection
    assert raw.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    pid = raw.info.backend_pid
    with other_session() as other:
        other.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])  # returns once it ended
    try:
        assert not connection.is_usable()
        # What Django does at the start of a request (request_started).
        connection.health_check_done = False
        connection.close_if_health_check_failed()
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            assert cursor.fetchone()[0] != pid
    finally:
        connection.close()
