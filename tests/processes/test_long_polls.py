"""One user's long polls against the production server of the Procfile (SPEC §8): they hold none of
the threads another user's requests need, they are bounded per user across the web's processes
(a shared cache), and a long poll's slot is freed when its client goes away.

The server is the Procfile's web line as written (bench/long_polls.py starts it, DJANGO_DEBUG=0,
on a free loopback port); `make bench`'s figures come from the same script."""

import os
import socket
import sqlite3
import time
from pathlib import Path

import pytest

from bench.long_polls import LongPolls, first_operation, procfile_web_line, production_server
from testbed.machine import recreate_postgres_database
from tests.support import wait_for

pytestmark = [pytest.mark.processes]


def slots_taken(server, kind: str = "waits") -> int:
    """Slots in the shared cache (the database's cache table) of every web process."""
    database = Path(server.log).parent / "db.sqlite3"
    with sqlite3.connect(database) as connection:
        query = "SELECT count(*) FROM long_task_cache WHERE cache_key LIKE ? AND expires > datetime('now')"
        return connection.execute(query, (f"%long-task:{kind}:%",)).fetchone()[0]


def raw_long_poll(server, path: str, etag: str) -> socket.socket:
    """A long poll sent on a socket of its own, its answer never read (close it to go away)."""
    sock = socket.create_connection(("127.0.0.1", server.port))
    request = (
        f"GET {path}?wait_for_change=60 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Token {server.tokens['poller']}\r\nIf-None-Match: {etag}\r\n\r\n"
    )
    sock.sendall(request.encode())
    return sock


def test_another_users_requests_answer_while_one_user_holds_16_long_polls():
    """Before the web was ASGI, the 16 took every thread of gunicorn's two workers: the other
    user waited for one of them to end (10 s)."""
    env = {"LONG_TASK_MAX_WAITS_PER_USER": "16", "LONG_TASK_CACHE_URL": "db"}
    with production_server(procfile_web_line(), **env) as server:
        op_id = first_operation(server, "poller")
        with LongPolls(server, 16, f"/api/operations/{op_id}/") as long_polls:
            wait_for(lambda: slots_taken(server) == 16, timeout=20, what="16 long polls waiting in the server")
            started = time.monotonic()
            for _ in range(5):
                status, _, _ = server.request("other", "/api/operations/", timeout=15)
                assert status == 200
            took = time.monotonic() - started
            assert long_polls.answers == [] and slots_taken(server) == 16  # all still waiting (10 s)
        assert took < 3.0, f"the other user's five requests took {took:.1f}s"


def test_a_fifth_long_poll_is_a_429_in_any_web_process_and_a_client_that_goes_away_frees_its_slot():
    env = {"LONG_TASK_CACHE_URL": "db", "LONG_TASK_MAX_WAIT_SECONDS": "60"}
    with production_server(procfile_web_line(), **env) as server:
        op_id = first_operation(server, "poller")
        path = f"/api/operations/{op_id}/"
        etag = server.request("poller", path)[1]["ETag"]
        held = [raw_long_poll(server, path, etag) for _ in range(4)]
        try:
            wait_for(lambda: slots_taken(server) == 4, timeout=20, what="4 long polls waiting")
            for _ in range(4):  # whichever of the two processes takes it
                status, headers, body = server.request("poller", f"{path}?wait_for_change=60", etag=etag)
                assert status == 429 and int(headers["Retry-After"]) >= 1, body
                assert b"Too many long polls at once (4 per user)" in body
            assert server.request("other", "/api/operations/")[0] == 200
        finally:
            for sock in held:
                sock.close()
        # Their time runs for another minute: only the server noticing the disconnects frees them.
        wait_for(lambda: slots_taken(server) == 0, timeout=20, what="the slots of the closed long polls")
        again = raw_long_poll(server, path, etag)
        try:
            wait_for(lambda: slots_taken(server) == 1, timeout=20, what="a long poll waiting again")
        finally:
            again.close()


def maintenance_session(database_url: str):
    import dj_database_url
    import psycopg

    db = dj_database_url.parse(database_url)
    server = {"host": db["HOST"], "port": db["PORT"] or 5432, "user": db["USER"], "password": db["PASSWORD"] or None}
    return psycopg.connect(**server, dbname="postgres", autocommit=True), db["NAME"]


def drop_database(database_url: str) -> None:
    session, name = maintenance_session(database_url)
    with session:
        session.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def django_connections(database_url: str) -> int:
    """Connections to the database of `database_url` made by Django (not the listener's)."""
    session, name = maintenance_session(database_url)
    with session:
        query = "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND application_name = ''"
        return session.execute(query, (name,)).fetchone()[0]


@pytest.mark.skipif(not os.environ.get("DATABASE_URL", "").startswith("postgres"), reason="PostgreSQL's pool")
def test_waiting_long_polls_give_their_pooled_connections_back():
    """On PostgreSQL each web process takes its connections from a pool, here of 4: a long poll
    gives its connection back while it waits, so that 16 of them wait at once in two processes
    (8 connections) and another user's requests are served meanwhile."""
    database_url = recreate_postgres_database(os.environ["DATABASE_URL"], suffix="_polls")
    env = {"LONG_TASK_MAX_WAITS_PER_USER": "16", "LONG_TASK_CACHE_URL": "db", "LONG_TASK_DATABASE_POOL": "4"}
    try:
        connections = waiting_long_polls_connections(database_url, env)
    finally:
        drop_database(database_url)
    assert connections <= 8, f"{connections} connections, past two pools of 4"


def waiting_long_polls_connections(database_url: str, env: dict[str, str]) -> int:
    """The Django connections of the Procfile's server while one user's 16 long polls wait,
    once another user's requests have been served."""
    with production_server(procfile_web_line(), database_url=database_url, **env) as server:
        op_id = first_operation(server, "poller")
        with LongPolls(server, 16, f"/api/operations/{op_id}/"):  # each asked again when it answers
            wait_for(lambda: pg_slots_taken(database_url) == 16, timeout=25, what="16 long polls waiting")
            for _ in range(5):
                assert server.request("other", "/api/operations/", timeout=15)[0] == 200
            return django_connections(database_url)


def pg_slots_taken(database_url: str) -> int:
    import psycopg

    with psycopg.connect(database_url.replace("postgres://", "postgresql://"), autocommit=True) as session:
        query = "SELECT count(*) FROM long_task_cache WHERE cache_key LIKE %s AND expires > now()"
        return session.execute(query, ("%long-task:waits:%",)).fetchone()[0]
