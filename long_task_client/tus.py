"""The client side of tus 1.0 (tus.io), the open protocol for resumable uploads: an upload is a
resource created with its length (`POST`, extension "creation"), its bytes are appended in
pieces at the offset the server confirms (`PATCH`), the offset is asked again after a cut
(`HEAD`), and an upload given up is deleted (`DELETE`, extension "termination"). A piece carries
its checksum when the server offers the extension "checksum" with an algorithm we know.

A piece is read into memory once (hashed there) and sent from memory with its Content-Length,
so that a proxy sees an ordinary body; a dropped connection is retried with back-off, asking the
server how far it got first."""

import base64
import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

import httpx

from long_task_client.api import Api, ApiError, Unreachable, error_of

TUS_VERSION = "1.0.0"
UPLOADS_PATH = "/api/uploads/"
# The piece size unless --chunk-size says otherwise: big enough that the requests' overhead is
# small, small enough to fit under the body limits of common hosting platforms (100 MB).
DEFAULT_CHUNK_BYTES = 50_000_000
# The reads a piece is streamed in, and the unit of the progress it reports.
SEND_BLOCK_BYTES = 256 * 1024
# The checksum algorithms we can compute, the one we prefer first (names as tus writes them).
CHECKSUM_ALGORITHMS = ("sha256", "sha1", "md5")
# A cut connection or a busy server: wait, ask the offset, go on. The waits double from the
# first to the longest; a piece that fails this many times in a row without progress gives up.
RETRY_FIRST_SECONDS = 0.5
RETRY_LONGEST_SECONDS = 16.0
RETRY_ATTEMPTS = 8
# Answers a proxy or a restarting server gives that are worth another try.
RETRYABLE_STATUSES = {423, 429, 500, 502, 503, 504}
# A piece's answer may wait for the server to finish the whole upload (the last piece: the file
# read back for its SHA-256), longer than an ordinary request's.
PIECE_TIMEOUT = httpx.Timeout(30.0, connect=5.0, read=600.0)
# tus: the checksum of a piece did not match (its bytes were not kept).
CHECKSUM_MISMATCH = 460


class Gone(Exception):
    """The upload no longer exists on the server (expired, deleted, another user's)."""


@dataclass
class ServerOptions:
    """What `OPTIONS /api/uploads/` announces."""

    extensions: frozenset[str]
    max_size: int | None
    checksum_algorithm: str | None


def encode_metadata(metadata: dict[str, str]) -> str:
    """`Upload-Metadata`: comma-separated `key base64(value)` pairs."""
    return ",".join(f"{key} {base64.b64encode(value.encode()).decode()}" for key, value in metadata.items())


def _number(response: httpx.Response, header: str) -> int:
    value = response.headers.get(header, "")
    if not (value.isascii() and value.isdigit()):
        raise ApiError(response.status_code, f"the server's answer has no usable {header}: {value!r}")
    return int(value)


class TusClient:
    """tus requests to one server, over the client's httpx connection (its token, its URL)."""

    def __init__(self, api: Api):
        self.api = api
        self.headers = {"Tus-Resumable": TUS_VERSION}

    def _request(self, method: str, url: str, **kwargs) -> httpx.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        try:
            return self.api.http.request(method, url, headers=headers, **kwargs)
        except httpx.TransportError as exc:
            raise Unreachable(f"cannot reach {self.api.url}: {exc or type(exc).__name__}") from None

    def options(self) -> ServerOptions:
        response = self._request("OPTIONS", UPLOADS_PATH)
        if response.is_error:
            raise error_of(response)
        extensions = frozenset(filter(None, (e.strip() for e in response.headers.get("Tus-Extension", "").split(","))))
        if "creation" not in extensions:
            raise ApiError(response.status_code, f"{self.api.url} does not offer resumable uploads (tus creation)")
        max_size = response.headers.get("Tus-Max-Size", "")
        offered = {a.strip().lower() for a in response.headers.get("Tus-Checksum-Algorithm", "").split(",")}
        algorithm = next((a for a in CHECKSUM_ALGORITHMS if a in offered), None) if "checksum" in extensions else None
        return ServerOptions(extensions, int(max_size) if max_size.isdigit() else None, algorithm)

    def create(self, *, length: int, metadata: dict[str, str]) -> str:
        """A new upload of `length` bytes; its URL (on this server, whatever Location says)."""
        headers = {"Upload-Length": str(length), "Upload-Metadata": encode_metadata(metadata)}
        response = self._request("POST", UPLOADS_PATH, headers=headers)
        if response.status_code != 201:
            raise error_of(response)
        location = response.headers.get("Location")
        if not location:
            raise ApiError(response.status_code, "the server created an upload but gave no Location")
        return str(self.api.http.base_url.join(self.api.on_this_server(location, what="the new upload")))

    def offset(self, url: str) -> int:
        """How many bytes of the upload the server has (HEAD); Gone if it has none of it."""
        response = self._request("HEAD", url, headers={"Cache-Control": "no-store"})
        if response.status_code in (403, 404, 410):
            raise Gone(url)
        if response.is_error:
            raise ApiError(response.status_code, f"HTTP {response.status_code} asking the offset of {url}")
        return _number(response, "Upload-Offset")

    def delete(self, url: str) -> None:
        response = self._request("DELETE", url)
        if response.is_error and response.status_code not in (404, 410):
            raise error_of(response)

    def send_piece(
        self,
        url: str,
        handle: BinaryIO,
        *,
        offset: int,
        length: int,
        algorithm: str | None,
        on_sent: Callable[[int], None],
    ) -> int:
        """PATCH the `length` bytes of `handle` at `offset`, read as they are sent (the file is
        read while the server stores what came before, and no piece is held in memory); the
        server's new offset."""
        headers = {
            "Content-Type": "application/offset+octet-stream",
            "Upload-Offset": str(offset),
            "Content-Length": str(length),
        }
        if algorithm:
            digest = hashlib.new(algorithm)
            for block in _blocks(handle, offset, length, lambda sent: None):
                digest.update(block)
            headers["Upload-Checksum"] = f"{algorithm} {base64.b64encode(digest.digest()).decode()}"
        response = self._request(
            "PATCH", url, headers=headers, content=_blocks(handle, offset, length, on_sent), timeout=PIECE_TIMEOUT
        )
        if response.status_code in (404, 410):
            raise Gone(url)
        if response.is_error:
            raise error_of(response)
        return _number(response, "Upload-Offset")


def _blocks(handle: BinaryIO, offset: int, length: int, on_sent: Callable[[int], None]) -> Iterator[bytes]:
    """The file's bytes from `offset`, `length` of them, a block at a time."""
    handle.seek(offset)
    sent = 0
    while sent < length:
        block = handle.read(min(SEND_BLOCK_BYTES, length - sent))
        if not block:
            raise OSError(f"the file ends at {offset + sent} bytes, before the {offset + length} bytes announced")
        sent += len(block)
        yield block
        on_sent(offset + sent)


class Sender:
    """Sends a file to an upload from the server's offset to its end, piece by piece, retrying
    what a cut or a busy server interrupted. `on_progress(bytes)` follows the bytes sent;
    `on_piece(offset)` is called after each piece the server confirmed."""

    def __init__(
        self,
        tus: TusClient,
        url: str,
        handle: BinaryIO,
        *,
        total: int,
        chunk_bytes: int,
        algorithm: str | None,
        on_progress: Callable[[int], None],
        on_piece: Callable[[int], None] = lambda offset: None,
        on_retry: Callable[[str, float], None] = lambda why, wait: None,
    ):
        self.tus, self.url, self.handle = tus, url, handle
        self.total, self.chunk_bytes, self.algorithm = total, chunk_bytes, algorithm
        self.on_progress, self.on_piece, self.on_retry = on_progress, on_piece, on_retry
        self.offset = 0

    def run(self, offset: int) -> None:
        self.offset = offset
        self.on_progress(offset)
        failures = 0
        while self.offset < self.total:
            try:
                self._send_next_piece()
            except (Unreachable, ApiError) as exc:
                failures = self._wait_to_retry(exc, failures)
                continue
            failures = 0
            self.on_piece(self.offset)

    def _send_next_piece(self) -> None:
        confirmed = self.tus.send_piece(
            self.url,
            self.handle,
            offset=self.offset,
            length=min(self.chunk_bytes, self.total - self.offset),
            algorithm=self.algorithm,
            on_sent=self.on_progress,
        )
        if not self.offset < confirmed <= self.total:
            raise ApiError(204, f"the server confirmed offset {confirmed} after a piece sent at {self.offset}")
        self.offset = confirmed

    def _wait_to_retry(self, exc: Exception, failures: int) -> int:
        """Wait before another try, then take the server's offset; re-raise what no wait
        mends (a refusal, too many failures in a row)."""
        if isinstance(exc, ApiError) and not worth_retrying(exc):
            raise exc
        if failures + 1 >= RETRY_ATTEMPTS:
            raise exc
        wait = retry_waits()[failures]
        self.on_retry(str(exc), wait)
        time.sleep(wait)
        try:
            server_offset = self.tus.offset(self.url)
        except (Unreachable, ApiError):
            return failures + 1
        moved_on = server_offset > self.offset  # some of the cut piece arrived after all
        self.offset = server_offset
        self.on_progress(server_offset)
        return 0 if moved_on else failures + 1


def retry_waits() -> list[float]:
    """The waits before each try again: doubling from the first to the longest."""
    return [min(RETRY_FIRST_SECONDS * 2**n, RETRY_LONGEST_SECONDS) for n in range(RETRY_ATTEMPTS - 1)]


def worth_retrying(exc: ApiError) -> bool:
    # 409: our offset is not the server's (a piece it got whose answer we lost): ask it again.
    return exc.status_code in RETRYABLE_STATUSES or exc.status_code in (409, CHECKSUM_MISMATCH)
