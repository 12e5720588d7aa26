"""`long-task` keeps its token to itself: it follows a page's `next` only on the server it was
pointed at (same scheme, host and port), and reads the token from the environment or from a
file (`--token-file`), so that it need not be on the command line, where `ps` shows it to
every user of the machine. Real HTTP servers on free ports: the one the client is pointed at,
and another one that records whatever reaches it."""

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from long_task_client import cli
from long_task_client.api import Api, ApiError
from long_task_shared import outcome
from tests.unit.test_client_parts import status_object

TOKEN = "0123456789abcdef0123456789abcdef01234567"


class Server:
    """An HTTP server in a thread: `answer(path)` gives (status, headers, body) for each GET;
    every request's path and Authorization header are kept in `seen`."""

    def __init__(self, answer: Callable[[str], tuple[int, dict, bytes]]):
        self.seen: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                server.seen.append((self.path, self.headers.get("Authorization")))
                status, headers, body = answer(self.path)
                self.send_response(status)
                for name, value in {"Content-Length": str(len(body)), **headers}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.http.shutdown()
        self.http.server_close()


def page(results: list[dict], next_url: str | None) -> tuple[int, dict, bytes]:
    body = json.dumps({"count": 99, "next": next_url, "previous": None, "results": results}).encode()
    return 200, {"Content-Type": "application/json"}, body


@pytest.fixture
def thief() -> Iterator[Server]:
    server = Server(lambda path: page([status_object(op_id=666)], None))
    yield server
    server.stop()


@pytest.fixture
def servers() -> Iterator[Callable[..., Server]]:
    started = []

    def start(answer) -> Server:
        started.append(Server(answer))
        return started[-1]

    yield start
    for server in started:
        server.stop()


def long_task(server: Server, *args: str) -> int:
    return cli.main(["--url", server.url, *args])


# --- `next` only on the client's own server ---------------------------------------------------


def test_a_next_page_on_another_port_is_not_followed(servers, thief, monkeypatch, capsys):
    monkeypatch.setenv("LONG_TASK_TOKEN", TOKEN)
    own = servers(lambda path: page([status_object(op_id=1)], f"{thief.url}/steal"))
    assert long_task(own, "list", "--json") == outcome.USAGE
    assert thief.seen == []
    assert own.seen == [("/api/operations/", f"Token {TOKEN}")]
    err = capsys.readouterr().err
    assert f"{thief.url}/steal" in err and "not on" in err and own.url in err


def test_a_next_page_on_the_same_server_is_followed(servers, monkeypatch, capsys):
    monkeypatch.setenv("LONG_TASK_TOKEN", TOKEN)

    def answer(path: str):
        if "page=2" in path:
            return page([status_object(op_id=1)], None)
        return page([status_object(op_id=2)], f"{own.url}/api/operations/?page=2")

    own = servers(answer)
    assert long_task(own, "list", "--json") == outcome.COMPLETED
    assert [op["op_id"] for op in json.loads(capsys.readouterr().out)] == [2, 1]
    assert [auth for _, auth in own.seen] == [f"Token {TOKEN}"] * 2


def test_a_redirect_to_another_server_is_not_followed(servers, thief, monkeypatch):
    monkeypatch.setenv("LONG_TASK_TOKEN", TOKEN)
    own = servers(lambda path: (302, {"Location": f"{thief.url}/steal"}, b""))
    assert long_task(own, "status", "7") == outcome.USAGE
    assert thief.seen == []


@pytest.mark.parametrize(
    "next_url",
    [
        "https://server/api/operations/?page=2",  # another scheme
        "http://server:8080/api/operations/?page=2",  # another port
        "http://server.evil.example/api/operations/?page=2",  # another host
        "//evil.example/api/operations/?page=2",  # scheme-relative: another host
    ],
)
def test_next_must_keep_scheme_host_and_port(next_url):
    asked = []

    def handle(request: httpx.Request) -> httpx.Response:
        asked.append(str(request.url))
        return httpx.Response(200, json={"next": next_url, "results": [status_object(op_id=len(asked))]})

    api = Api("http://server", TOKEN, transport=httpx.MockTransport(handle))
    with pytest.raises(ApiError, match="not on http://server"):
        list(api.operations(limit=10))
    assert asked == ["http://server/api/operations/"]


@pytest.mark.parametrize(
    "next_url",
    ["http://server:80/api/operations/?page=2", "HTTP://SERVER/api/operations/?page=2", "/api/operations/?page=2"],
)
def test_the_same_server_written_otherwise_is_followed(next_url):
    asked = []

    def handle(request: httpx.Request) -> httpx.Response:
        asked.append(str(request.url))
        more = None if len(asked) > 1 else next_url
        return httpx.Response(200, json={"next": more, "results": [status_object(op_id=len(asked))]})

    api = Api("http://server", TOKEN, transport=httpx.MockTransport(handle))
    assert [op["op_id"] for op in api.operations(limit=10)] == [1, 2]
    assert asked[1] == "http://server/api/operations/?page=2"


# --- the token out of `ps` ------------------------------------------------------------------------


@pytest.fixture
def own(servers) -> Server:
    return servers(lambda path: (200, {"Content-Type": "application/json"}, json.dumps(status_object()).encode()))


def test_the_token_is_read_from_a_file(own, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("LONG_TASK_TOKEN", raising=False)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    assert long_task(own, "--token-file", str(token_file), "status", "7") == outcome.COMPLETED
    assert long_task(own, "status", "7", "--token-file", str(token_file)) == outcome.COMPLETED
    assert [auth for _, auth in own.seen] == [f"Token {TOKEN}"] * 2
    assert "warning" not in capsys.readouterr().err


def test_the_token_file_wins_over_the_environment(own, tmp_path, monkeypatch):
    monkeypatch.setenv("LONG_TASK_TOKEN", "from-the-environment")
    (tmp_path / "token").write_text(TOKEN)
    assert long_task(own, "--token-file", str(tmp_path / "token"), "status", "7") == outcome.COMPLETED
    assert own.seen[0][1] == f"Token {TOKEN}"


def test_the_token_from_the_environment_needs_no_option(own, monkeypatch, capsys):
    monkeypatch.setenv("LONG_TASK_TOKEN", TOKEN)
    assert long_task(own, "status", "7") == outcome.COMPLETED
    assert own.seen[0][1] == f"Token {TOKEN}"
    assert "warning" not in capsys.readouterr().err


def test_the_token_on_the_command_line_still_works_with_a_warning(own, capsys):
    assert long_task(own, "--token", TOKEN, "status", "7") == outcome.COMPLETED
    assert own.seen[0][1] == f"Token {TOKEN}"
    err = capsys.readouterr().err
    assert "warning: --token" in err and "ps" in err and "--token-file" in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read the token file"),
        ("", "no token in"),
        ("\n\n", "no token in"),
        ("two words\n", "one token"),
        ("tökén\n", "one token"),
    ],
)
def test_a_bad_token_file_exits_3_before_asking(own, tmp_path, capsys, content, message):
    token_file = tmp_path / "token"
    if content is not None:
        token_file.write_text(content)
    assert long_task(own, "--token-file", str(token_file), "status", "7") == outcome.USAGE
    assert message in capsys.readouterr().err
    assert own.seen == []


def test_token_and_token_file_together_are_a_usage_error(own, tmp_path, capsys):
    (tmp_path / "token").write_text(TOKEN)
    assert long_task(own, "--token", TOKEN, "status", "7", "--token-file", str(tmp_path / "token")) == outcome.USAGE
    assert "--token or --token-file, not both" in capsys.readouterr().err
    assert own.seen == []


def test_help_says_where_the_token_comes_from(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--token-file FILE" in text and "LONG_TASK_TOKEN" in text
    assert "(ps)" in text and "shown by ps" in text
