"""PostgreSQL, with a health check that needs no round trip while the connection looks sound.

With CONN_HEALTH_CHECKS Django asks a kept connection `SELECT 1` before the first query of each
request: one of the three round trips of a status request (check, token, operation), each a
chance to queue behind an import's backend for a core. A connection the server ended (a
restart, `pg_terminate_backend`, a timeout) has something to read on its socket: the server's
FATAL message or the end of the stream. So an idle connection whose socket has nothing to read
is taken as usable at once; anything else gets Django's `SELECT 1`, which decides.
"""

import select

from django.db.backends.postgresql import base
from psycopg.pq import TransactionStatus


def _has_input(socket: int) -> bool:
    poller = select.poll()
    poller.register(socket, select.POLLIN | select.POLLPRI)
    return bool(poller.poll(0))


class DatabaseWrapper(base.DatabaseWrapper):
    def is_usable(self):
        connection = self.connection
        if connection is None or connection.closed:
            return False
        if connection.info.transaction_status == TransactionStatus.IDLE and not _has_input(connection.fileno()):
            return True
        return super().is_usable()
