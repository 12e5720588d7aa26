"""Django's ASGI handler, with the request body read as the view reads it.

Django's own handler reads each request's whole body into a temporary file (on disk past
FILE_UPLOAD_MAX_MEMORY_SIZE) before any middleware or view runs: a body that a view refuses
would still land on the web's disk, and every upload would pass through it before the file
store. Here the request's body is a stream that the view's thread pulls from the server one
message at a time (`ReceivedBody`): memory holds what the server hands over at once (uvicorn
stops reading the socket past 64 KiB until asked for more), nothing is written anywhere, and a
body that no view reads is never taken off the socket (the server discards it after the
response).

Django listens for the client's disconnect from the start of a request, which would take the
body's messages; here it listens only once the body has been read (`BodyReceiver`). A request
whose body is not read therefore goes unwatched, as under a WSGI server; a body-less request
(its one message is read before the view) is watched as before, which is what cancels a long
poll whose client went away.
"""

import asyncio
import concurrent.futures
import threading

from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, ASGIRequest


class BodyReceiver:
    """The server's `receive`, which knows when the body has been read to its end."""

    def __init__(self, receive):
        self._receive = receive
        self.body_ended = asyncio.Event()
        self.disconnected = False

    async def __call__(self):
        return await self._receive()

    async def next_body_message(self) -> dict:
        message = await self._receive()
        if message["type"] == "http.disconnect":
            self.disconnected = True
            self.body_ended.set()
        elif not message.get("more_body", False):
            self.body_ended.set()
        return message


class ReceivedBody:
    """A request body as a file to read (`read`, `readline`), received from the server as it is
    read, from the view's thread: each read that needs more waits for the next message on the
    event loop, at most `timeout` seconds (then, as on a client's disconnect, an OSError, which
    Django raises as UnreadablePostError)."""

    def __init__(self, receiver: BodyReceiver, loop: asyncio.AbstractEventLoop, *, timeout: float):
        self._receiver, self._loop, self._timeout = receiver, loop, timeout
        self._buffer = bytearray()
        self._more = True
        self._closed = False
        self._pending: concurrent.futures.Future | None = None
        self._loop_thread = threading.get_ident()

    async def receive_first(self) -> None:
        """The first message, on the event loop: all of a small body; RequestAborted if the
        client has gone."""
        message = await self._receiver.next_body_message()
        if message["type"] == "http.disconnect":
            raise RequestAborted()
        self._take(message)

    def _take(self, message: dict) -> None:
        self._buffer += message.get("body", b"")
        self._more = message.get("more_body", False)

    def _receive_more(self) -> None:
        if self._closed:
            raise OSError("the request has ended")
        if threading.get_ident() == self._loop_thread:
            raise RuntimeError("a request body is read from a thread (sync_to_async), not on the event loop")
        self._pending = asyncio.run_coroutine_threadsafe(self._receiver.next_body_message(), self._loop)
        try:
            message = self._pending.result(self._timeout)
        except concurrent.futures.TimeoutError:
            self._pending.cancel()
            raise OSError(f"no more of the request body in {self._timeout:g} seconds") from None
        except concurrent.futures.CancelledError:
            raise OSError("the request has ended") from None
        finally:
            self._pending = None
        if message["type"] == "http.disconnect":
            self._more = False
            raise OSError("the client went away before the end of the request body")
        self._take(message)

    def _taken(self, end: int) -> bytes:
        data = bytes(self._buffer[:end])
        del self._buffer[:end]
        return data

    def read(self, size: int | None = -1) -> bytes:
        while self._more and (size is None or size < 0 or len(self._buffer) < size):
            self._receive_more()
        return self._taken(len(self._buffer) if size is None or size < 0 else size)

    def readline(self, size: int | None = -1) -> bytes:
        limited = size is not None and size >= 0
        while self._more and b"\n" not in self._buffer and not (limited and len(self._buffer) >= size):
            self._receive_more()
        end = self._buffer.find(b"\n") + 1 or len(self._buffer)
        return self._taken(min(end, size) if limited else end)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        """The request has ended: what was not read stays with the server, and a read waiting
        for the next message ends."""
        self._closed, self._more = True, False
        self._buffer.clear()
        pending = self._pending
        if pending is not None:
            pending.cancel()


class StreamingBodyASGIHandler(ASGIHandler):
    async def handle(self, scope, receive, send):
        await super().handle(scope, BodyReceiver(receive), send)

    async def read_body(self, receive: BodyReceiver) -> ReceivedBody:
        body = ReceivedBody(receive, asyncio.get_running_loop(), timeout=ASGIRequest.body_receive_timeout)
        await body.receive_first()
        return body

    async def listen_for_disconnect(self, receive: BodyReceiver):
        """Django's listener, from the end of the body on (its messages are the body's reader's
        until then)."""
        await receive.body_ended.wait()
        if receive.disconnected:
            raise RequestAborted()
        return await super().listen_for_disconnect(receive)
