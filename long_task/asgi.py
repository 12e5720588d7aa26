"""The ASGI application: what the Procfile's web line serves (gunicorn with uvicorn's worker).

Under ASGI a long poll that waits, and a stream whose reader is slow, hold no thread
(operations/api/waiting.py); every other view runs in a thread of its own request. The server's
lifespan messages are answered here (Django's handler takes HTTP only): at shutdown the process's
listener for long polls closes its connection (operations/api/notifications.py). The request
body is read as the view reads it, never spooled to disk first (asgi_handler.py).
"""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "long_task.settings")
# Each ASGI request has a context (and so a database connection) of its own, never reused by
# the next request: Django's documentation says to turn persistent connections off under ASGI.
os.environ.setdefault("DATABASE_CONN_MAX_AGE", "0")
# On PostgreSQL the connections come from a pool of the process (settings.py).
os.environ.setdefault("LONG_TASK_DATABASE_POOL", "50")
django.setup(set_prefix=False)  # what get_asgi_application does before making its handler

from long_task.asgi_handler import StreamingBodyASGIHandler  # noqa: E402

django_application = StreamingBodyASGIHandler()

# The same warm-up as the WSGI application's: the modules that first requests would import,
# then the garbage collector's full passes kept off them (see wsgi.py).
import long_task.wsgi  # noqa: E402, F401
from operations.api import notifications  # noqa: E402


async def application(scope, receive, send):
    if scope["type"] != "lifespan":
        return await django_application(scope, receive, send)
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await notifications.stop()
            await send({"type": "lifespan.shutdown.complete"})
            return
