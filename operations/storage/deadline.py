"""The file store's time in a web request (SPEC §8: a dependency that hangs costs a web request
a bounded time, then a clear 503; retries belong to workers).

`FileStoreDeadlineMiddleware` runs each request inside `web_request()`. There, the S3 store uses
a client of its own whose calls wait at most LONG_TASK_STORE_WEB_DEADLINE_SECONDS for the store
(to connect, and for each read or write of the socket) and are not retried, botocore's
retries included (but for a connection closed before any answer, tried again at once: see
`S3Objects._web_call`): the first call that gets no answer fails the request with
StorageUnavailable (503), and the request's later calls to the store (the clean-up of what it began) fail at once
instead of waiting again; what they leave is left to the bucket's lifecycle rule
(docs/deployment.md). A file opened for reading in the request (a download) keeps that client
for the rest of its stream.

Outside a request (workers, management commands) calls are retried with backoff,
LONG_TASK_STORAGE_RETRIES times.
"""

import contextlib
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass
class WebRequest:
    """The file store as this request has seen it: `failed` once a call got no answer."""

    failed: bool = False


_current: ContextVar[WebRequest | None] = ContextVar("long_task_store_web_request", default=None)


@contextlib.contextmanager
def web_request():
    """The file store's calls inside this block are a web request's."""
    token = _current.set(WebRequest())
    try:
        yield
    finally:
        _current.reset(token)


def current() -> WebRequest | None:
    """The web request being served, or None outside one (a worker)."""
    return _current.get()
