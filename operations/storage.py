"""The file store: local disk by default, S3 or any S3-compatible store by configuration
(`LONG_TASK_STORAGE_URL=s3://bucket/prefix`, SPEC §11). Operation types, the upload handler and
the download view go through these few functions, so that both keep I7 (memory does not grow
with the file) and I8 (a resume reads from the checkpoint's byte offset, nothing before it):

- `open_for_reading(name)`: a seekable binary file. Local disk: the file itself. S3: ranged GETs
  of `LONG_TASK_S3_READ_BYTES` from wherever it is positioned, never the whole object (which is
  what django-storages' own S3 file does on its first read).
- `save(name, content)`: bytes or a stream. S3: a multipart upload, one part in memory at a time.
- `upload_target(...)` and `store_upload(upload, name)`: where the upload handler streams a
  request's file, and how an operation keeps it. Local disk: a temporary file next to the media
  root, kept by a rename. S3: a multipart upload into the object itself, kept as it is; one
  that is refused, cut off or never kept is aborted or deleted.
- `delete(name)`, `listdir(directory)`.

Any other Django storage backend works through Django's storage API (`default_storage`), with
its own costs. Transient S3 errors (a connection refused, reset or cut mid-body, a 5xx) are
retried with backoff, `LONG_TASK_STORAGE_RETRIES` times; then `StorageUnavailable`, which fails
the operation like any error a worker cannot get past (resume it once the store is back).
"""

import contextlib
import io
import logging
import mmap
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from typing import BinaryIO, TypeVar

from django.conf import settings
from django.core.files.base import ContentFile, File
from django.core.files.storage import FileSystemStorage, default_storage
from django.core.files.uploadedfile import TemporaryUploadedFile, UploadedFile

from operations.errors import OperationError

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Small reads (a header, a rejected row's text) need not fetch a whole block.
SMALL_BLOCK_BYTES = 64 * 1024
# A ranged GET's body is read in slices of this size (urllib3 copies through a temporary).
READ_SLICE_BYTES = 256 * 1024
# The first GET after a seek; each next one doubles, up to the block size.
FIRST_READ_BYTES = 256 * 1024


class StorageUnavailable(OperationError):
    """The file store did not answer, or not for long enough, after the retries."""

    status_code = 503


# --- the backend in use -----------------------------------------------------------------------


def _s3_storage():
    """The default storage if it is django-storages' S3 backend (imported only then: boto3 is
    heavy for a process that never talks to S3)."""
    backend = settings.STORAGES["default"]["BACKEND"]
    if not backend.startswith("storages.backends.s3"):
        return None
    from storages.backends.s3 import S3Storage

    return default_storage if isinstance(default_storage, S3Storage) else None


def _local_disk() -> bool:
    return isinstance(default_storage, FileSystemStorage)


def is_object_store() -> bool:
    """Files live in S3 (or an S3-compatible store), not on this machine's disk."""
    return _s3_storage() is not None


# --- the functions the rest of the code calls -------------------------------------------------


def open_for_reading(name: str, *, block_size: int | None = None, read_ahead: bool = False) -> BinaryIO:
    """A binary file, seekable, read `block_size` bytes at a time from the store (S3: one
    ranged GET a block; default `LONG_TASK_S3_READ_BYTES`). Reading starts where it is sought
    to: nothing before that offset is fetched. `read_ahead` (S3, for a reader that goes on
    to the end, if `LONG_TASK_S3_READ_AHEAD`): each block once read, the next is fetched in a
    thread while this one is used."""
    s3 = _s3_storage()
    if s3 is not None:
        block = block_size or settings.LONG_TASK_S3_READ_BYTES
        ahead = read_ahead and settings.LONG_TASK_S3_READ_AHEAD
        raw = RangedReader(_Objects(s3), name, block_size=block, read_ahead=ahead)
        return io.BufferedReader(raw, buffer_size=block)
    if _local_disk():
        return open(default_storage.path(name), "rb", buffering=block_size or -1)  # noqa: SIM115
    return default_storage.open(name, "rb")


def save(name: str, content: bytes | BinaryIO) -> str:
    """Store `content` (bytes, or a binary stream read to its end) under `name`; return the
    name it was stored under."""
    s3 = _s3_storage()
    if s3 is None:
        content = ContentFile(content) if isinstance(content, bytes) else File(content)
        return default_storage.save(name, content)
    objects = _Objects(s3)
    if isinstance(content, bytes):
        objects.retrying(f"storing {name}", lambda: objects.put(name, content))
        return name
    writer = MultipartWriter(objects, name)
    try:
        while data := content.read(settings.LONG_TASK_S3_PART_BYTES):
            writer.write(data)
        writer.complete()
    except BaseException:
        writer.abort()
        raise
    return name


def delete(name: str) -> None:
    """Delete a stored file; one that is already gone is not an error."""
    s3 = _s3_storage()
    if s3 is None:
        default_storage.delete(name)
        return
    objects = _Objects(s3)
    key = objects.key(name)
    objects.retrying(f"deleting {name}", lambda: objects.client.delete_object(Bucket=objects.bucket, Key=key))


def listdir(directory: str) -> list[str]:
    """The names of the files in `directory` (relative to it); none if it does not exist."""
    s3 = _s3_storage()
    if s3 is not None:
        objects = _Objects(s3)
        prefix = objects.key(directory).rstrip("/") + "/"

        def names() -> list[str]:
            pages = objects.client.get_paginator("list_objects_v2").paginate(
                Bucket=objects.bucket, Prefix=prefix, Delimiter="/"
            )
            return [item["Key"][len(prefix) :] for page in pages for item in page.get("Contents", ())]

        return objects.retrying(f"listing {directory}", names)
    try:
        _, names = default_storage.listdir(directory)
    except FileNotFoundError:
        return []
    return names


def exists(name: str) -> bool:
    return default_storage.exists(name)


def upload_target(*, file_name: str, content_type: str, charset: str | None, content_type_extra: dict | None):
    """Where the upload handler writes a request's file as it arrives: a `SpooledUpload`
    (local disk, and any storage but S3) or an `ObjectUpload` (S3)."""
    s3 = _s3_storage()
    if s3 is None:
        return SpooledUpload(file_name, content_type, 0, charset, content_type_extra)
    name = f"uploads/{uuid.uuid4().hex}.csv"
    return ObjectUpload(_Objects(s3), name, file_name, content_type, charset, content_type_extra)


def store_upload(upload: UploadedFile, name: str) -> str:
    """Keep a received upload; return its stored name. Local disk: a rename to `name`. S3: the
    upload is already its object (`name` is not used: S3 has no rename)."""
    if isinstance(upload, ObjectUpload):
        return upload.keep()
    return default_storage.save(name, upload)


# --- local disk: the upload spools to a temporary file that storing renames -------------------


class SpooledUpload(TemporaryUploadedFile):
    """A request's file in a temporary file next to the media root (FILE_UPLOAD_TEMP_DIR), so
    that storing it is a rename, not a second copy. Closing it deletes what was not stored."""

    finished = False
    _discarded = False

    def write(self, data: bytes) -> None:
        if not self._discarded:
            self.file.write(data)

    def finish(self, size: int) -> None:
        self.file.flush()
        self.file.seek(0)
        self.size = size
        self.finished = True

    def discard(self) -> None:
        """Refused while it arrives: keep nothing of it."""
        self._discarded = True
        self.file.truncate(0)


# --- S3 -----------------------------------------------------------------------------------------


class _Objects:
    """The S3 calls of this module, on django-storages' client, bucket and location."""

    def __init__(self, storage):
        from botocore.exceptions import ClientError

        self.storage = storage
        self.client = _shared_client(storage)
        self.bucket = storage.bucket_name
        self.ClientError = ClientError

    def key(self, name: str) -> str:
        from storages.utils import clean_name

        return self.storage._normalize_name(clean_name(name))

    def put(self, name: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self.key(name), Body=data, ContentType=_content_type(name))

    def status(self, exc: Exception) -> int:
        """The HTTP status of an error answer from S3 (0: no answer)."""
        if not isinstance(exc, self.ClientError):
            return 0
        return exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)

    def transient(self, exc: Exception) -> bool:
        """Worth trying again: the connection failed or was cut, or the store said so (5xx,
        429 SlowDown). Not: a missing object, a refused permission, a bad request."""
        from botocore import exceptions as boto

        if isinstance(exc, self.ClientError):
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
        (`Stopped`)."""
        retries = settings.LONG_TASK_STORAGE_RETRIES
        for attempt in range(retries + 1):
            try:
                return call()
            except Exception as exc:
                if not self.transient(exc):
                    raise
                if attempt == retries:
                    raise StorageUnavailable(
                        f"The file store did not answer: {what} failed {attempt + 1} times ({exc})"
                    ) from exc
                delay = min(5.0, 0.2 * 2**attempt)
                logger.warning("file store: %s failed (%s), retrying in %.1fs", what, exc, delay)
                if stop is None:
                    time.sleep(delay)
                elif stop.wait(delay):
                    raise Stopped(what) from exc
        raise AssertionError("unreachable")


_clients: "weakref.WeakKeyDictionary[object, object]" = weakref.WeakKeyDictionary()
_clients_lock = threading.Lock()


def _shared_client(storage):
    """One boto3 client per storage for all threads (clients are thread-safe). django-storages
    makes a session and a resource per thread, which under a server that starts a thread per
    request (runserver) costs a session's memory and ~50 ms on every upload."""
    with _clients_lock:
        client = _clients.get(storage)
        if client is None:
            client = storage._create_session().client(
                "s3",
                region_name=storage.region_name,
                use_ssl=storage.use_ssl,
                endpoint_url=storage.endpoint_url,
                config=storage.client_config,
                verify=storage.verify,
            )
            _clients[storage] = client
        return client


def _content_type(name: str) -> str:
    return "text/csv" if name.endswith(".csv") else "application/octet-stream"


class ShortRead(Exception):
    """A response body ended before its Content-Length (the connection was cut)."""


class Stopped(Exception):
    """A read ahead given up while it waited to try again: its reader was closed."""


class _ReadOnlyStream(io.RawIOBase):
    """What the two read-only, seekable streams below share."""

    _position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position


class RangedReader(_ReadOnlyStream):
    """An S3 object as a read-only, seekable raw file: each `readinto` is one ranged GET of the
    buffer's length from the current position, read straight into the buffer. Wrapped in an
    `io.BufferedReader` (see `open_for_reading`), whose buffer size is the block size and whose
    `readline` is C. A body cut short is continued from where it stopped.

    `read_ahead`: once a GET has been read, the next one (from where it ended) runs in a thread
    of its own into a spare block while the caller parses this one; the next `readinto` there
    copies it over (a memcpy, ~1 ms for 4 MiB, where the GET is tens of ms). Memory: one block
    more. Never before the first read after a seek: a resume's first GET is from the
    checkpoint (I8). A seek elsewhere waits for the GET in flight and drops it; `close` stops
    its retries, and its thread ends with the attempt in flight."""

    def __init__(self, objects: _Objects, name: str, *, block_size: int, read_ahead: bool = False):
        super().__init__()
        self.name = name
        self.block_size = block_size
        self._objects = objects
        self._key = objects.key(name)
        self._position = 0
        self._size: int | None = None  # learnt from the first response (or a HEAD for SEEK_END)
        self._ramp = FIRST_READ_BYTES
        self._read_ahead = read_ahead
        self._ahead: _Ahead | None = None  # the next block's GET, running or done
        self._spare: bytearray | None = None  # where it is read into
        self._stop = threading.Event()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_CUR:
            offset += self._position
        elif whence == io.SEEK_END:
            offset += self.size()
        elif whence != io.SEEK_SET:
            raise ValueError(f"invalid whence {whence}")
        if offset < 0:
            raise ValueError("negative seek position")
        if offset != self._position:
            self._ramp = FIRST_READ_BYTES
        self._position = offset
        return offset

    def size(self) -> int:
        if self._size is None:
            head = self._objects.retrying(f"reading {self.name}", lambda: self._missing_as_not_found(self._head))
            self._size = head["ContentLength"]
        return self._size

    def _head(self) -> dict:
        return self._objects.client.head_object(Bucket=self._objects.bucket, Key=self._key)

    def readall(self) -> bytes:
        """The rest of the object, a block per GET (RawIOBase's would GET 8 KiB at a time)."""
        out = bytearray()
        while True:
            block = bytearray(self.block_size)
            n = self.readinto(block)
            if not n:
                return bytes(out)
            out += memoryview(block)[:n]

    def readinto(self, buffer) -> int:
        if not len(buffer) or (self._size is not None and self._position >= self._size):
            return 0
        view = memoryview(buffer).cast("B")
        ahead = self._ahead
        if ahead is not None and ahead.start == self._position:
            self._ahead = None  # if its GET failed, the next readinto tries again itself
            received = ahead.take(view)  # raises what the GET raised
            if ahead.left:  # a short buffer: the rest is for the next readinto
                ahead.start = self._position + received
                self._ahead = ahead
        else:
            self._drop_ahead()
            # The first GETs after a seek are small and grow to the block: a resume's first
            # chunk needs a few rows, not a block (4 MiB is ~40 ms of transfer), a long read
            # soon gets whole blocks. The buffered reader takes a short read as it comes.
            received = self._get(self._position, view[: self._next_length()])
        self._position += received
        more = self._size is None or self._position < self._size
        if self._read_ahead and received and more and self._ahead is None and not self._stop.is_set():
            try:
                if self._spare is None:
                    self._spare = bytearray(self.block_size)
                self._ahead = _Ahead(self, self._position, memoryview(self._spare)[: self._next_length()])
            except Exception:  # no memory or no thread for it: the bytes received still count
                logger.warning("file store: reading %s without read-ahead", self.name, exc_info=True)
                self._read_ahead, self._ahead = False, None
        return received

    def _next_length(self) -> int:
        length = self._ramp
        self._ramp = min(2 * self._ramp, self.block_size)
        return length

    def _drop_ahead(self) -> None:
        """Stop the GET ahead, if any (no more retries), wait for its attempt in flight, and
        forget it (and whatever it raised)."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            ahead.stop.set()
            ahead.thread.join()

    def close(self) -> None:
        # Without waiting for a GET ahead in flight: a worker closes its job before it
        # acknowledges a pause. That GET ends after its current attempt (no retries once
        # stopped), and its thread with it, dropping the spare block.
        self._stop.set()
        if self._ahead is not None:
            self._ahead.stop.set()
        self._ahead = self._spare = None
        super().close()

    def _get(self, position: int, view: memoryview, *, stop: threading.Event | None = None) -> int:
        """One ranged GET of `view`'s length from `position` into `view`: the bytes received
        (fewer at the end of the object). Transient errors are retried."""
        last = position + len(view) - 1
        received = 0

        def fetch() -> None:
            # From where the previous attempt was cut off: what it delivered is kept.
            nonlocal received
            start = position + received
            try:
                response = self._objects.client.get_object(
                    Bucket=self._objects.bucket, Key=self._key, Range=f"bytes={start}-{last}"
                )
            except self._objects.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "InvalidRange":
                    raise
                self._size = start  # at or past the end of the object
                return
            # "bytes 0-1023/4096": the object's size comes with every ranged answer.
            total = response.get("ContentRange", "").rpartition("/")[2]
            if total.isdigit():
                self._size = int(total)
            end = received + response["ContentLength"]
            body = response["Body"]
            # In slices: urllib3 reads each into a temporary of its size before copying it.
            while received < end and (n := body.readinto(view[received : min(end, received + READ_SLICE_BYTES)])):
                received += n
            if received < end:
                raise ShortRead(f"the body ended after {received} of {end} bytes")

        what = f"reading {self.name} at byte {position}"
        self._objects.retrying(what, lambda: self._missing_as_not_found(fetch), stop=stop)
        return received

    def _missing_as_not_found(self, call: Callable[[], T]) -> T:
        try:
            return call()
        except self._objects.ClientError as exc:
            if self._objects.status(exc) == 404:
                raise FileNotFoundError(f"No stored file {self.name}") from None
            raise


class _Ahead:
    """The GET of a reader's next block, in a thread of its own (a daemon: a process that exits
    does not wait for it), into the reader's spare block."""

    def __init__(self, reader: RangedReader, start: int, view: memoryview):
        self.start = start
        self.left = memoryview(b"")  # received and not yet taken
        self._view = view
        self._error: BaseException | None = None
        self.stop = threading.Event()  # set: no more retries (dropped, or its reader closed)
        self.thread = threading.Thread(target=self._run, args=(reader,), name=f"read-ahead {reader.name}", daemon=True)
        self.thread.start()

    def _run(self, reader: RangedReader) -> None:
        try:
            received = reader._get(self.start, self._view, stop=self.stop)
            self.left = self._view[:received]
        except BaseException as exc:  # handed to the reader's thread, which raises it
            self._error = exc

    def take(self, view: memoryview) -> int:
        """Copy what was received into `view` (as much as fits); the bytes copied."""
        self.thread.join()
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        n = min(len(view), len(self.left))
        view[:n] = self.left[:n]
        self.left = self.left[n:]
        return n


class MultipartWriter:
    """Bytes written to one S3 object as a multipart upload: parts of `LONG_TASK_S3_PART_BYTES`
    (S3 wants at least 5 MiB but for the last), each sent as soon as it is full, one at a
    time, so memory holds one part. The object exists once `complete()` has returned; a writer
    aborted, or dropped before it completed, leaves nothing (not even the parts, which S3 would
    keep and bill until an abort)."""

    def __init__(self, objects: _Objects, name: str):
        self.objects, self.name, self.key = objects, name, objects.key(name)
        self.size = 0
        self.completed = False
        self._parts: list[dict] = []
        # The part being filled, outside malloc's heaps: an anonymous mapping is given back to
        # the system when closed, whatever thread allocated it. (A bytearray of the web's
        # request thread would stay in that thread's malloc arena, and a server's threads
        # would each keep one: memory growing with the uploads, not bounded by one part.)
        self._buffer = mmap.mmap(-1, settings.LONG_TASK_S3_PART_BYTES)
        self._filled = 0
        created = objects.retrying(
            f"storing {name}",
            lambda: objects.client.create_multipart_upload(
                Bucket=objects.bucket, Key=self.key, ContentType=_content_type(name)
            ),
        )
        self.upload_id = created["UploadId"]
        # The last resort for a writer nobody aborted (a request that died half-way): abort it
        # when it is garbage-collected. A process killed outright leaves the parts to the
        # bucket's AbortIncompleteMultipartUpload rule (docs/deployment.md).
        self._abort = weakref.finalize(self, _abort_multipart, objects.client, objects.bucket, self.key, self.upload_id)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = min(len(view), len(self._buffer) - self._filled)
            self._buffer[self._filled : self._filled + n] = view[:n]
            self._filled += n
            self.size += n
            view = view[n:]
            if self._filled == len(self._buffer):
                self._send_part()

    def _send_part(self) -> None:
        number = len(self._parts) + 1
        objects = self.objects
        with memoryview(self._buffer) as view:
            part = view[: self._filled]
            sent = objects.retrying(
                f"storing {self.name} (part {number})",
                lambda: objects.client.upload_part(
                    Bucket=objects.bucket, Key=self.key, UploadId=self.upload_id, PartNumber=number, Body=_View(part)
                ),
            )
            part.release()
        self._filled = 0
        entry = {"PartNumber": number, "ETag": sent["ETag"]}
        entry.update(
            {key: value for key, value in sent.items() if key.startswith("Checksum") and key != "ChecksumType"}
        )
        self._parts.append(entry)

    def complete(self) -> None:
        if self._filled or not self._parts:
            self._send_part()  # the last part may be short (or empty, for an empty file)
        self._release()
        objects = self.objects
        objects.retrying(
            f"storing {self.name}",
            lambda: objects.client.complete_multipart_upload(
                Bucket=objects.bucket, Key=self.key, UploadId=self.upload_id, MultipartUpload={"Parts": self._parts}
            ),
        )
        self.completed = True
        self._abort.detach()

    def abort(self) -> None:
        """Give the upload up: S3 drops the parts sent so far. Once only; not after complete."""
        self._release()
        self._abort()

    def _release(self) -> None:
        with contextlib.suppress(BufferError):  # a view still held by a failed request: the GC's
            self._buffer.close()


class _View(_ReadOnlyStream):
    """A part's bytes as a read-only, seekable file, without a copy (botocore takes bytes,
    bytearrays or files, not memoryviews)."""

    def __init__(self, view: memoryview):
        super().__init__()
        self._view, self._position = view, 0

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: len(self._view)}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer) -> int:
        n = max(0, min(len(buffer), len(self._view) - self._position))
        buffer[:n] = self._view[self._position : self._position + n]
        self._position += n
        return n


def _abort_multipart(client, bucket: str, key: str, upload_id: str) -> None:
    try:
        client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    except Exception as exc:  # the bucket's lifecycle rule is the last word (docs/deployment.md)
        logger.warning("file store: could not abort the multipart upload of %s: %s", key, exc)


class ObjectUpload(UploadedFile):
    """A request's file streamed into its S3 object as it arrives (a `MultipartWriter`): no
    copy on the web's disk, memory one part. The request keeps the object only if an operation
    takes it (`keep`, through `store_upload`); otherwise closing it (Django closes a request's
    files when the response is done) deletes it, and an upload never finished is aborted."""

    def __init__(self, objects: _Objects, name: str, file_name, content_type, charset, content_type_extra):
        self._writer = MultipartWriter(objects, name)
        super().__init__(None, file_name, content_type, 0, charset, content_type_extra)
        self.stored_name = name
        self._objects = objects
        self._kept = False
        self._discarded = False
        self._closed = False

    def write(self, data: bytes) -> None:
        if not self._discarded:
            self._writer.write(data)

    def finish(self, size: int) -> None:
        self.size = size
        if not self._discarded:
            self._writer.complete()

    def discard(self) -> None:
        """Refused while it arrives (not text, too large): abort now, store nothing more."""
        self._discarded = True
        self._writer.abort()

    @property
    def finished(self) -> bool:
        return self._writer.completed

    def keep(self) -> str:
        if not self._writer.completed:
            raise StorageUnavailable(f"The upload {self.stored_name} was not stored")
        self._kept = True
        return self.stored_name

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._kept:
            return
        if not self._writer.completed:
            self.discard()
            return
        try:
            delete(self.stored_name)
        except Exception as exc:
            logger.warning("file store: could not delete the refused upload %s: %s", self.stored_name, exc)
