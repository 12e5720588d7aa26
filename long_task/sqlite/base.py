"""SQLite, with write locks that a busy worker cannot starve.

SQLite has one writer at a time. Its busy handler sleeps up to 100 ms between attempts to get
the write lock, while a worker re-takes the lock within microseconds of each commit, so a pause
request could wait for a whole import. Here SQLite's busy timeout is 0 and every statement that
finds the database locked (BEGIN IMMEDIATE above all) is retried every millisecond until the
configured timeout: a waiting request gets in at the worker's next commit, while the worker
prepares its next chunk outside the transaction (see worker.py).

Retrying is safe: a statement that failed with SQLITE_BUSY changed nothing, which is exactly
why SQLite's own busy handler may retry it.
"""

import time

from django.db.backends.sqlite3 import base

RETRY_SECONDS = 0.001


def retry_while_locked(run, *, timeout: float):
    """Run `run()`, retrying every millisecond while the database is locked, up to `timeout`."""
    deadline = None
    while True:
        try:
            return run()
        except Exception as exc:  # sqlite3.OperationalError, or Django's wrapper of it
            if "database is locked" not in str(exc):
                raise
            deadline = deadline or time.monotonic() + timeout
            if time.monotonic() > deadline:
                raise
            time.sleep(RETRY_SECONDS)


class FairCursorWrapper(base.SQLiteCursorWrapper):
    busy_timeout = 30.0

    def execute(self, query, params=None):
        run = super().execute
        return retry_while_locked(lambda: run(query, params), timeout=self.busy_timeout)

    def executemany(self, query, param_list):
        param_list = list(param_list)
        run = super().executemany
        return retry_while_locked(lambda: run(query, param_list), timeout=self.busy_timeout)


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params):
        self.busy_timeout = float(conn_params.get("timeout", 5.0))
        connection = super().get_new_connection(conn_params)
        connection.execute("PRAGMA busy_timeout = 0")
        return connection

    def create_cursor(self, name=None):
        cursor = self.connection.cursor(factory=FairCursorWrapper)
        cursor.busy_timeout = self.busy_timeout
        return cursor

    def _commit(self):
        if self.connection is not None:
            with self.wrap_database_errors:
                retry_while_locked(self.connection.commit, timeout=self.busy_timeout)
