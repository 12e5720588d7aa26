"""The requests the client makes, over httpx. Answers are JSON; an error is `{"message": ...}`
(perhaps with a `hint`) and becomes `ApiError`; no answer at all becomes `Unreachable`."""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import BinaryIO

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"
USER_AGENT = "long-task-client/1.0"
DEFAULT_PORTS = {"http": 80, "https": 443}


class ApiError(Exception):
    """The server refused the request: its status code and its message."""

    def __init__(self, status_code: int, message: str, hint: str = ""):
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.hint = hint


class Unreachable(Exception):
    """No answer from the server (refused, timed out, cut)."""


class CountingFile:
    """A file that reports how far it has been read: httpx streams a multipart upload from it
    in 64 KiB reads, and seeks to the start first (a retry starts the count again)."""

    def __init__(self, handle: BinaryIO, on_progress: Callable[[int], None]):
        self._handle = handle
        self._on_progress = on_progress

    def read(self, size: int = -1) -> bytes:
        data = self._handle.read(size)
        self._on_progress(self._handle.tell())
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._handle.seek(offset, whence)

    def tell(self) -> int:
        return self._handle.tell()

    def fileno(self) -> int:  # httpx takes the length from fstat: a Content-Length, not chunks
        return self._handle.fileno()


def error_of(response: httpx.Response) -> ApiError:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return ApiError(response.status_code, body["message"], str(body.get("hint") or ""))
    # Not an answer of long_task (a proxy's error page, another server on that port...).
    return ApiError(response.status_code, f"HTTP {response.status_code} {response.reason_phrase} from {response.url}")


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    """Scheme, host and port, the port written out (httpx keeps `:80` if the URL has it)."""
    return url.scheme, url.host, url.port or DEFAULT_PORTS.get(url.scheme)


class Api:
    def __init__(
        self, url: str, token: str | None, *, timeout: float = 30.0, transport: httpx.BaseTransport | None = None
    ):
        self.url = url.rstrip("/")
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Token {token}"
        # The read timeout covers the longest `wait` the server allows (10 s by default).
        self.http = httpx.Client(
            base_url=self.url, headers=headers, timeout=httpx.Timeout(timeout, connect=5.0), transport=transport
        )

    def close(self) -> None:
        self.http.close()

    def on_this_server(self, url: object, *, what: str = "the next page") -> str:
        """`url`, a URL an answer gave, if it is on the server this client was pointed at (or
        relative to it). The token goes to that server only, whatever an answer says."""
        try:
            target = httpx.URL(url) if isinstance(url, str) else None
        except httpx.InvalidURL:
            target = None
        if target is None:
            raise ApiError(200, f"the server answered an unusable URL for {what}: {url!r}")
        if (target.scheme or target.host) and _origin(target) != _origin(self.http.base_url):
            raise ApiError(
                200,
                f"{what} is not on {self.url} but at {url}: not followed, to keep the token there",
                hint="a proxy in front of the server must pass on the Host the client asked for",
            )
        return url

    def _call(self, method: str, path: str, **kwargs) -> dict:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise Unreachable(f"cannot reach {self.url}: {exc or type(exc).__name__}") from None
        if response.is_error:
            raise error_of(response)
        try:
            return response.json()
        except ValueError:
            raise ApiError(response.status_code, f"the answer from {response.url} is not JSON") from None

    # --- the seed endpoints (SPEC §5) ---------------------------------------------------------

    def register(self, op_type: str = "Upload", **options) -> dict:
        """A new operation of `op_type` with its options (an Upload's `strict`, an Export's
        `source` and `filter`...)."""
        return self._call("POST", "/register/", json={"op_type": op_type, **options})

    def start(self, op_id: int, handle: BinaryIO, *, name: str, on_progress: Callable[[int], None]) -> dict:
        """Send the file (multipart, streamed from disk) to start the operation. The op_id also
        in the query string: a file refused before its body is read is then recorded in the
        operation's history."""
        files = {"file": (name, CountingFile(handle, on_progress), "text/csv")}
        return self._call("POST", "/upload/", params={"op_id": str(op_id)}, data={"op_id": str(op_id)}, files=files)

    def start_from_upload(self, op_id: int, *, upload: str) -> dict:
        """Start the operation with a finished resumable upload (its URL or id)."""
        return self._call("POST", "/upload/", data={"op_id": str(op_id), "upload": upload})

    def start_without_input(self, op_id: int) -> dict:
        """Start an operation that takes no input (an Export reads its source's rows)."""
        return self._call("POST", f"/api/operations/{op_id}/start/", json={})

    def pause(self, op_id: int, *, wait: float = 0) -> dict:
        return self._call("POST", "/pause/", json={"op_id": op_id, "wait": wait})

    def resume(self, op_id: int) -> dict:
        return self._call("POST", "/resume/", json={"op_id": op_id})

    def terminate(self, op_id: int, *, force: bool = False, wait: float = 0) -> dict:
        return self._call("POST", "/terminate/", json={"op_id": op_id, "force": force, "wait": wait})

    # --- the REST API (SPEC §6) ---------------------------------------------------------------

    def import_checked(self, op_id: int) -> dict:
        """Import what the completed dry run `op_id` checked, from the file it stored: the new
        operation's status."""
        return self._call("POST", f"/api/operations/{op_id}/import/", json={})

    def status(self, op_id: int) -> dict:
        return self._call("GET", f"/api/operations/{op_id}/")

    def next_status(self, op_id: int, *, etag: str | None, wait: float) -> tuple[dict | None, str | None]:
        """The status once it differs from version `etag` (a long poll of up to `wait` seconds),
        and its new version; (None, etag) when nothing changed meanwhile."""
        headers = {"If-None-Match": etag} if etag else {}
        try:
            response = self.http.get(f"/api/operations/{op_id}/", params={"wait_for_change": wait}, headers=headers)
        except httpx.TransportError as exc:
            raise Unreachable(f"cannot reach {self.url}: {exc or type(exc).__name__}") from None
        if response.status_code == 304:
            return None, etag
        if response.is_error:
            raise error_of(response)
        return response.json(), response.headers.get("ETag")

    def operations(self, *, state: str | None = None, limit: int = 50) -> Iterator[dict]:
        """The caller's operations, most recent first, following the pages up to `limit`."""
        url, params, left = "/api/operations/", {"state": state} if state else None, limit
        while url and left > 0:
            page = self._call("GET", self.on_this_server(url), params=params)
            if not page["results"]:
                return
            yield from page["results"][:left]
            left -= len(page["results"])
            # `next` carries its whole query (the page, the filter): params would replace it.
            url, params = page.get("next"), None

    @contextmanager
    def download(self, path: str, params: dict) -> Iterator[Iterator[bytes]]:
        """A streamed GET: yields an iterator over the body's bytes, once the answer is known
        to be the download (not an error, not a web page from whatever answered)."""
        try:
            with self.http.stream("GET", path, params=params) as response:
                if response.is_error:
                    response.read()
                    raise error_of(response)
                if response.headers.get("Content-Type", "").startswith("text/html"):
                    raise ApiError(
                        response.status_code, f"the answer from {response.url} is a web page, not a download"
                    )
                yield response.iter_bytes()
        except httpx.TransportError as exc:
            raise Unreachable(f"cannot reach {self.url}: {exc or type(exc).__name__}") from None
