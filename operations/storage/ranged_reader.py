"""An S3 object read as a seekable file, by ranged GETs from wherever it is positioned: never
the whole object (which is what django-storages' own S3 file does on its first read), nothing
before a resume's checkpoint (I8), one block in memory (I7), and optionally the next block
fetched in a thread while this one is parsed."""

import io
import logging
import threading
from collections.abc import Callable
from typing import TypeVar

from operations.storage.errors import ShortRead
from operations.storage.s3_client import S3Objects

logger = logging.getLogger(__name__)
T = TypeVar("T")

# A ranged GET's body is read in slices of this size (urllib3 copies through a temporary).
READ_SLICE_BYTES = 256 * 1024
# The first GET after a seek; each next one doubles, up to the block size.
FIRST_READ_BYTES = 256 * 1024


class ReadOnlyStream(io.RawIOBase):
    """A read-only, seekable raw stream (this reader, and the multipart writer's parts)."""

    _position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position


class RangedReader(ReadOnlyStream):
    """An S3 object as a read-only, seekable raw file: each `readinto` is one ranged GET of the
    buffer's length from the current position, read straight into the buffer. Wrapped in an
    `io.BufferedReader` (see `S3Store.open_for_reading`), whose buffer size is the block size
    and whose `readline` is C. A body cut short is continued from where it stopped.

    `read_ahead`: once a GET has been read, the next one (from where it ended) runs in a thread
    of its own into a spare block while the caller parses this one; the next `readinto` there
    copies it over (a memory copy, far shorter than the GET it hides). Memory: one block more.
    Never before the first read after a seek: a resume's first GET is from the checkpoint (I8).
    A seek elsewhere waits for the GET in flight and drops it; `close` stops its retries, and
    its thread ends with the attempt in flight."""

    def __init__(self, objects: S3Objects, name: str, *, block_size: int, read_ahead: bool = False):
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
            # chunk needs a few rows, not a block (whose transfer it would wait for), a long
            # read soon gets whole blocks. The buffered reader takes a short read as it comes.
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
            if total.isascii() and total.isdigit():
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
