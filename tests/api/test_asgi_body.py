"""The ASGI handler reads a request body as the view reads it (long_task/asgi_handler.py), in
process: what the server handed over is counted message by message. The Procfile's server, its
temporary directory watched, is tests/processes/test_asgi_bodies.py."""

import asyncio
import json

import pytest

from long_task.asgi_handler import StreamingBodyASGIHandler

pytestmark = pytest.mark.django_db(transaction=True)

PART = b"x" * 65536
PARTS = 20


class Server:
    """An ASGI server's side of one request: a body of `parts` messages, then a disconnect."""

    def __init__(self, parts: list[bytes]):
        self.parts = parts
        self.taken = 0
        self.sent: list[dict] = []

    async def receive(self) -> dict:
        if self.taken < len(self.parts):
            self.taken += 1
            return {
                "type": "http.request",
                "body": self.parts[self.taken - 1],
                "more_body": self.taken < len(self.parts),
            }
        await asyncio.sleep(3600)  # the client stays until the answer
        return {"type": "http.disconnect"}

    async def send(self, message: dict) -> None:
        self.sent.append(message)

    def status(self) -> int:
        return self.sent[0]["status"]

    def body(self) -> bytes:
        return b"".join(message.get("body", b"") for message in self.sent[1:])


def serve(path: str, parts: list[bytes], headers: list[tuple[bytes, bytes]]) -> Server:
    server = Server(parts)
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    asyncio.run(asyncio.wait_for(StreamingBodyASGIHandler()(scope, server.receive, server.send), timeout=60))
    return server


def test_a_body_no_view_reads_is_not_taken_from_the_server():
    """An anonymous POST to the API: refused before anything reads the body. Django's own
    handler would have taken all of it (into a temporary file) first."""
    length = str(PARTS * len(PART)).encode()
    headers = [(b"content-type", b"multipart/form-data; boundary=b"), (b"content-length", length)]
    server = serve("/api/operations/", [PART] * PARTS, headers)
    assert server.status() in (401, 403)
    assert server.taken == 1  # the first message, read before the view (all of a small body)


def test_a_body_the_view_reads_arrives_whole_message_by_message(user):
    """A JSON body in many messages, read by the view through the stream: the whole of it."""
    from rest_framework.authtoken.models import Token

    token = Token.objects.get_or_create(user=user)[0].key
    body = json.dumps({"op_type": "Upload", "padding": " " * 100}).encode()
    parts = [body[n : n + 7] for n in range(0, len(body), 7)]
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"authorization", f"Token {token}".encode()),
    ]
    server = serve("/register/", parts, headers)
    assert server.taken == len(parts)
    # The view read the body whole: the option it does not know is named in the 400.
    assert server.status() == 400 and b"padding" in server.body(), server.body()


def test_djangos_middlewares_run_in_the_requests_thread_not_as_async(user):
    """Under ASGI, a middleware that can run both ways runs async when what it wraps is async,
    and each of its hooks is then a hop to a thread and back. Inside none but sync ones (the
    sync-only middleware last: settings.MIDDLEWARE), all of them run in the request's thread."""
    from unittest import mock

    from django.utils.deprecation import MiddlewareMixin
    from rest_framework.authtoken.models import Token

    token = Token.objects.get_or_create(user=user)[0].key
    headers = [(b"content-type", b"application/json"), (b"authorization", f"Token {token}".encode())]
    registered = serve("/register/", [b"{}"], [*headers, (b"content-length", b"2")])
    body = json.dumps({"op_id": json.loads(registered.body())["op_id"]}).encode()
    with mock.patch.object(MiddlewareMixin, "__acall__", autospec=True, side_effect=MiddlewareMixin.__acall__) as acall:
        server = serve("/get_status/", [body], [*headers, (b"content-length", str(len(body)).encode())])
    assert server.status() == 200
    assert [type(call.args[0]).__name__ for call in acall.call_args_list] == []
