"""SQLite, with write transactions that a busy worker cannot starve.

SQLite has one writer at a time. Its busy handler sleeps up to 100 ms between attempts to get
the write lock, while a worker re-takes the lock within microseconds of each commit, so a pause
request could wait for the whole import. Here BEGIN is retried every millisecond instead: a
waiting request gets in at the worker's next commit, while the worker prepares its next chunk
(parsing happens outside the transaction, see worker.py).
"""

import time

from django.db import OperationalError
from django.db.backends.sqlite3 import base

RETRY_SECONDS = 0.001


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params):
        self.busy_timeout = float(conn_params.get("timeout", 5.0))
        return super().get_new_connection(conn_params)

    def _start_transaction_under_autocommit(self):
        begin = f"BEGIN {self.transaction_mode or ''}".strip()
        deadline = time.monotonic() + self.busy_timeout
        self.connection.execute("PRAGMA busy_timeout = 0")
        try:
            while True:
                try:
                    self.cursor().execute(begin)
                    return
                except OperationalError as exc:
                    if "locked" not in str(exc) or time.monotonic() > deadline:
                        raise
                    time.sleep(RETRY_SECONDS)
        finally:
            self.connection.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
