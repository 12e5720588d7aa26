"""The S3 client of a store and its retry policy: the calls of the S3 backend, on django-storages'
configuration (bucket, location, endpoint, credentials, client config). Transient errors (a
connection refused, reset or cut mid-body, a 5xx, a 429) are retried with backoff,
`LONG_TASK_STORAGE_RETRIES` times; then `StorageUnavailable`. A web request's calls are not
retried and wait a bounded time (`deadline`). What failed, and how, goes to the log: the
message that reaches users and operations names no endpoint, bucket or key."""

import logging
import mimetypes
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from botocore import exceptions as boto
from botocore.config import Config
from botocore.exceptions import ClientError
from django.conf import settings
from storages.utils import clean_name

from operations.storage import deadline
from operations.storage.errors import ShortRead, Stopped, StorageUnavailable

logger = logging.getLogger(__name__)
T = TypeVar("T")
# Python's own table only (not the machine's mime.types): the same answer everywhere.
_TYPES = mimetypes.MimeTypes()
# A connection that ended before an answer (not a timeout: a store that hangs times out).
CLOSED_BEFORE_ANSWER = (boto.ConnectionClosedError, boto.EndpointConnectionError)


def content_type(name: str) -> str:
    """The Content-Type an object is stored with, from its name's extension."""
    return _TYPES.guess_type(name)[0] or "application/octet-stream"


class S3Objects:
    """The S3 calls on the bucket and location of django-storages' S3 storage `storage`, with one
    boto3 client for all threads (clients are thread-safe). django-storages makes a session and
    a resource per thread, which under a server that starts a thread per request (runserver)
    costs a session's memory and its setup time on every upload. Made once per storage (see
    `operations.storage.backend`).

    `web_deadline` (seconds): the calls of web requests, which wait that long at most for the
    store (to connect, and for each read or write of the socket) and are tried once."""

    ClientError = ClientError

    def __init__(self, storage, *, web_deadline: float | None = None):
        self.storage = storage
        self.bucket = storage.bucket_name
        self.web_deadline = web_deadline
        config = storage.client_config
        if web_deadline is not None:
            config = (config or Config()).merge(
                Config(
                    connect_timeout=min(web_deadline, config.connect_timeout if config else web_deadline),
                    read_timeout=web_deadline,
                    retries={"mode": "standard", "total_max_attempts": 1},
                )
            )
        self.client = storage._create_session().client(
            "s3",
            region_name=storage.region_name,
            use_ssl=storage.use_ssl,
            endpoint_url=storage.endpoint_url,
            config=config,
            verify=storage.verify,
        )

    def key(self, name: str) -> str:
        """The object key of a stored name: under the storage's location (prefix)."""
        return self.storage._normalize_name(clean_name(name))

    def put(self, name: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self.key(name), Body=data, ContentType=content_type(name))

    def status(self, exc: Exception) -> int:
        """The HTTP status of an error answer from S3 (0: no answer)."""
        if not isinstance(exc, ClientError):
            return 0
        return exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)

    def transient(self, exc: Exception) -> bool:
        """Worth trying again: the connection failed or was cut, or the store said so (5xx,
        429 SlowDown). Not: a missing object, a refused permission, a bad request."""
        if isinstance(exc, ClientError):
            return self.status(exc) >= 500 or self.status(exc) in (408, 429)
        return isinstance(
            exc,
            boto.ConnectionError
            | boto.HTTPClientError
            | boto.IncompleteReadError
            | ShortRead
            | ConnectionError
            | TimeoutError,
        )

    def retrying(self, what: str, call: Callable[[], T], *, stop: threading.Event | None = None) -> T:
        """`call()`, tried again with backoff (0.2, 0.4, 0.8 ... s) while it fails transiently,
        `LONG_TASK_STORAGE_RETRIES` times; then StorageUnavailable. `stop` set: no more tries
        (`Stopped`). A web request's call: see `_web_call`."""
        if self.web_deadline is not None:
            return self._web_call(what, call)
        retries = settings.LONG_TASK_STORAGE_RETRIES
        for attempt in range(retries + 1):
            try:
                return call()
            except Exception as exc:
                if not self.transient(exc):
                    raise
                if attempt == retries:
                    logger.error("file store: %s failed %d times: %s", what, attempt + 1, exc)
                    raise StorageUnavailable() from exc
                delay = min(5.0, 0.2 * 2**attempt)
                logger.warning("file store: %s failed (%s), retrying in %.1fs", what, exc, delay)
                if stop is None:
                    time.sleep(delay)
                elif stop.wait(delay):
                    raise Stopped(what) from exc
        raise AssertionError("unreachable")

    def _web_call(self, what: str, call: Callable[[], T]) -> T:
        """A web request's call: no retry and no backoff, a StorageUnavailable as soon as the store
        does not answer (the client's timeouts are the deadline), and none tried once the store
        has failed this request (see `deadline`). One exception: a connection closed or refused
        before any answer, in less than the deadline, is tried again at once, once: a pooled
        connection the store had closed looks the same, and is no sign of a store in trouble."""
        request = deadline.current()
        if request is not None and request.failed:
            logger.warning("file store: %s not tried: the store did not answer this request", what)
            raise StorageUnavailable()
        started = time.monotonic()
        for attempt in (1, 2):
            try:
                return call()
            except Exception as exc:
                if not self.transient(exc):
                    raise
                quick = time.monotonic() - started < self.web_deadline
                if attempt == 1 and quick and isinstance(exc, CLOSED_BEFORE_ANSWER):
                    logger.warning("file store: %s failed (%s), trying again at once", what, exc)
                    continue
                logger.error("file store: %s failed %d times: %s", what, attempt, exc)
                if request is not None:
                    request.failed = True
                raise StorageUnavailable() from exc
        raise AssertionError("unreachable")
