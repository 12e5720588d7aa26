"""Helpers without Django, shared by the tests, `make bench` and `make chaos` (the last two call
some of them before Django is set up): ports, waiting, a process's peak memory, and a fresh
PostgreSQL database."""

import socket
import time
from collections.abc import Callable
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def wait_for(predicate: Callable[[], object], *, timeout: float = 30.0, interval: float = 0.02, what: str = ""):
    """Poll `predicate` until it returns something truthy, and return that; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


def peak_rss_kib(pid: int) -> int:
    """The peak resident memory of a running process (Linux: VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmHWM for process {pid}")


def recreate_postgres_database(url: str, *, suffix: str = "") -> str:
    """Drop and create the database of `url`, its name followed by `suffix`, on `url`'s server;
    return the URL of the new database."""
    import dj_database_url
    import psycopg

    db = dj_database_url.parse(url)
    name = db["NAME"] + suffix
    server = {
        "host": db["HOST"] or "127.0.0.1",
        "port": db["PORT"] or 5432,
        "user": db["USER"],
        "password": db["PASSWORD"] or None,
    }
    with psycopg.connect(**server, dbname="postgres", autocommit=True) as maintenance:
        maintenance.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        maintenance.execute(f'CREATE DATABASE "{name}"')
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{server['host']}:{server['port']}/{name}"
