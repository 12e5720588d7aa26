"""`long-task` against a fake server (httpx's MockTransport): what it asks, what it prints, how
it ends. Following, the Ctrl-Cs, export and download; the live server is tests/processes/test_client.py."""

import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from long_task_client import cli
from long_task_client.api import Api
from long_task_shared import outcome
from tests.support import free_port
from tests.unit.test_client_parts import status_object

Answer = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


class FakeServer:
    """What the client gets instead of a server. `answers[(method, path)]` is an answer, or a
    list of them taken in turn: a response, an exception to raise (a lost connection, a Ctrl-C
    that lands while the request waits), or a function of the request."""

    def __init__(self):
        self.answers: dict[tuple[str, str], Answer | list[Answer]] = {}
        self.requests: list[httpx.Request] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers[(request.method, request.url.path)]
        if isinstance(answer, list):
            answer = answer.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer(request) if callable(answer) else answer

    def asked(self, method: str, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if (r.method, r.url.path) == (method, path)]


def answer(status: int, body: object, **headers: str) -> httpx.Response:
    if isinstance(body, str):
        return httpx.Response(status, text=body, headers={"Content-Type": "text/html", **headers})
    return httpx.Response(status, json=body, headers=headers)


def csv_answer(content: bytes) -> httpx.Response:
    return httpx.Response(200, content=content, headers={"Content-Type": "text/csv; charset=utf-8"})


def lost() -> httpx.ConnectError:
    return httpx.ConnectError("[Errno 111] Connection refused")


@pytest.fixture
def fake(monkeypatch) -> FakeServer:
    server = FakeServer()
    monkeypatch.setattr(cli, "Api", lambda url, token: Api(url, token, transport=httpx.MockTransport(server.handle)))
    return server


@pytest.fixture
def outdir(tmp_path):
    """A directory of its own for the files a command writes (nothing else in it)."""
    path = tmp_path / "out"
    path.mkdir()
    return path


@pytest.fixture
def sleeps(monkeypatch) -> list[float]:
    """The client's waits, recorded instead of slept."""
    waits: list[float] = []
    monkeypatch.setattr(time, "sleep", waits.append)
    return waits


def long_task(*args: str) -> int:
    return cli.main(["--url", "http://server", *args])


# --- errors and usage -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["status"],
        ["status", "abc"],
        ["status", "0"],
        ["nonsense"],
        ["follow", "1", "--interval", "0"],
        ["export", "7", "--filter", "city"],
        ["export", "7", "--filter", "=Paris"],
        ["download"],
    ],
)
def test_usage_errors_exit_3(argv, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == outcome.USAGE
    assert "usage: long-task" in capsys.readouterr().err


def test_no_server_exits_3_with_a_message(capsys):
    url = f"http://127.0.0.1:{free_port()}"
    assert cli.main(["status", "1", "--url", url]) == outcome.USAGE
    err = capsys.readouterr().err
    assert f"cannot reach {url}" in err and "LONG_TASK_URL" in err


def test_a_bad_url_exits_3(capsys):
    assert cli.main(["--url", "localhost:8000", "status", "1"]) == outcome.USAGE
    assert "must start with http://" in capsys.readouterr().err


def test_a_file_that_cannot_be_read_exits_3(tmp_path, capsys):
    assert cli.main(["upload", str(tmp_path / "missing.csv"), "--url", "http://127.0.0.1:1"]) == outcome.USAGE
    assert "cannot read" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("status", "body", "code", "message"),
    [
        (404, {"message": "Operation ID Invalid"}, 3, "long-task: Operation ID Invalid"),
        (401, {"message": "Invalid token."}, 3, "set LONG_TASK_TOKEN or --token"),
        (409, {"message": "Upload already paused"}, 1, "long-task: Upload already paused"),
        (409, {"message": "Upload already paused", "hint": "resume it"}, 1, "Upload already paused (resume it)"),
        (502, "<html>Bad Gateway</html>", 3, "HTTP 502 Bad Gateway from http://server/pause/"),
    ],
)
def test_error_answers(fake, capsys, status, body, code, message):
    fake.answers[("POST", "/pause/")] = answer(status, body)
    assert cli.main(["--url", "http://server", "--token", "t0k", "pause", "7"]) == code
    assert message in capsys.readouterr().err
    request = fake.requests[0]
    assert request.headers["Authorization"] == "Token t0k"
    assert json.loads(request.content)["op_id"] == 7


def test_terminate_of_a_running_operation_says_what_to_do(fake, capsys):
    fake.answers[("POST", "/terminate/")] = answer(409, {"message": "Pause the operation"})
    assert long_task("terminate", "7") == outcome.REFUSED
    err = capsys.readouterr().err
    assert "Pause the operation" in err and "long-task pause 7" in err and "--force" in err


def test_status_in_words_and_as_json(fake, capsys):
    fake.answers[("GET", "/api/operations/7/")] = answer(200, status_object())
    assert long_task("status", "7") == 0
    text = capsys.readouterr().out
    assert "operation 7 (Upload): running" in text
    assert "42.5%, 1,500 rows done, 2 rejected" in text and "250,000 rows/s, ETA 3m05s" in text
    assert cli.main(["status", "7", "--url", "http://server", "--json"]) == 0  # options after the command too
    assert json.loads(capsys.readouterr().out) == status_object()


def list_of(*ops: dict) -> httpx.Response:
    return answer(200, {"count": len(ops), "next": None, "previous": None, "results": list(ops)})


LISTED = [
    status_object(9, file_name="people.csv", duration_seconds=12.0, created_at="2026-11-29T10:00:00Z"),
    status_object(
        8,
        state="failed",
        file_name="a\tname with spaces.csv",
        duration_seconds=185.0,
        error="line 7: expected 4 fields, found 3\n" + "x" * 100,
        rows_per_second=None,
        eta_seconds=None,
    ),
]


def test_list_for_scripts_keeps_its_fields_and_adds_file_created_ran_and_reason(fake, capsys):
    fake.answers[("GET", "/api/operations/")] = list_of(*LISTED)
    assert long_task("list") == 0
    running, failed = (line.split("\t") for line in capsys.readouterr().out.splitlines())
    assert running[:9] == ["9", "Upload", "running", "42.5%", "1,500", "2", "250,000", "3m05s", running[8]]
    assert running[9:] == ["people.csv", running[10], "12s", ""]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", running[10])  # the time, for a script
    assert failed[2] == "failed" and failed[9] == "a name with spaces.csv" and failed[11] == "3m05s"
    assert failed[12].startswith("line 7: expected 4 fields, found 3 xxx") and failed[12].endswith("\u2026")
    assert len(failed[12]) == 60


def listed_on_a_terminal(fake, capsys, monkeypatch, *, columns: int) -> list[str]:
    """`long-task list` of LISTED on a colour terminal this wide: its lines, colours taken out."""
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("COLUMNS", str(columns))
    fake.answers[("GET", "/api/operations/")] = list_of(*LISTED)
    assert long_task("list") == 0
    return re.sub(r"\x1b\[[0-9;]*m", "", capsys.readouterr().out).splitlines()


def test_list_on_a_terminal_shows_an_age_and_the_reason(fake, capsys, monkeypatch):
    header, running, failed = listed_on_a_terminal(fake, capsys, monkeypatch, columns=250)
    assert header.split() == [
        "id",
        "type",
        "file",
        "state",
        "percent",
        "rows",
        "rejected",
        "rows/s",
        "eta",
        "created",
        "ran",
        "reason",
    ]
    assert re.search(r"people\.csv +running .* \d+h\d\dm ago +12s *$", running), running
    assert "failed" in failed and "3m05s" in failed and "line 7: expected 4 fields" in failed


def test_list_from_a_server_without_the_new_fields(fake, capsys):
    """An older server's list has no file_name nor duration_seconds: `-` for them."""
    fake.answers[("GET", "/api/operations/")] = list_of(status_object(9))
    assert long_task("list") == 0
    fields = capsys.readouterr().out.rstrip("\n").split("\t")
    assert (fields[9], fields[11], fields[12]) == ("-", "-", "")


def test_output_into_a_closed_pipe_ends_quietly(fake, monkeypatch, tmp_path):
    """`long-task status 7 | head -0`: the reader is gone before the client writes a line. No
    traceback (nor "Exception ignored" at exit, with what is buffered sent nowhere), exit 0."""
    fake.answers[("GET", "/api/operations/7/")] = answer(200, status_object())
    reader, writer = os.pipe()
    os.close(reader)
    stderr = (tmp_path / "stderr").open("w")
    monkeypatch.setattr(sys, "stdout", os.fdopen(writer, "w"))
    monkeypatch.setattr(sys, "stderr", stderr)
    try:
        assert long_task("status", "7") == outcome.COMPLETED
        sys.stdout.write("still buffered")
        sys.stdout.flush()  # what the interpreter does at exit: the pipe's end is now /dev/null
    finally:
        sys.stdout.close()
        stderr.close()
    assert (tmp_path / "stderr").read_text() == ""


# --- following --------------------------------------------------------------------------------

STATUS = ("GET", "/api/operations/7/")


def test_follow_long_polls_with_the_last_etag(fake, sleeps):
    """Following asks the server to hold the answer until the status changes (a long poll, with
    the version it has), instead of asking again every interval: 304s while nothing moves."""
    fake.answers[STATUS] = [
        answer(200, status_object(state="queued"), ETag='"v1"'),
        httpx.Response(304, headers={"ETag": '"v1"'}),
        answer(200, status_object(state="completed", lines_finished=10), ETag='"v2"'),
    ]
    assert long_task("follow", "7") == outcome.COMPLETED
    waits = [float(request.url.params["wait_for_change"]) for request in fake.requests]
    # The first question, with no version yet, is answered at once; then long polls.
    assert waits == [0, cli.LONG_POLL_SECONDS, cli.LONG_POLL_SECONDS] and cli.LONG_POLL_SECONDS > 1
    assert [request.headers.get("If-None-Match") for request in fake.requests] == [None, '"v1"', '"v1"']


def test_follow_exits_3_at_once_when_the_server_cannot_be_reached(fake, sleeps, capsys):
    """A server that never answered is down or wrongly named: say so, do not wait for it."""
    fake.answers[STATUS] = lost()
    assert long_task("follow", "7") == outcome.USAGE
    assert (len(fake.requests), sleeps) == (1, [])
    err = capsys.readouterr().err
    assert "cannot reach http://server" in err and "LONG_TASK_URL" in err


def test_follow_retries_with_back_off_once_it_has_begun(fake, sleeps, capsys):
    """A server that stops answering while followed is perhaps restarting: try again, waiting
    longer each time, and carry on when it is back."""
    fake.answers[STATUS] = [
        answer(200, status_object(), ETag='"v1"'),
        lost(),
        lost(),
        lost(),
        answer(200, status_object(state="completed", lines_finished=1500), ETag='"v2"'),
    ]
    assert long_task("follow", "7", "--interval", "0.5") == outcome.COMPLETED
    assert sleeps == [0.5, 1.0, 2.0, 4.0]  # the interval, then the back-off
    out = capsys.readouterr().out
    assert out.count("cannot reach http://server") == 3 and "trying again in 4s" in out
    assert "operation 7 completed" in out


def test_follow_gives_up_when_the_server_stays_away(fake, sleeps, monkeypatch, capsys):
    clock = iter(range(0, 10_000, 10))  # each look at the clock: 10 s later
    monkeypatch.setattr(time, "monotonic", lambda: next(clock))
    fake.answers[STATUS] = [answer(200, status_object(), ETag='"v1"'), *[lost()] * 10]
    assert long_task("follow", "7") == outcome.USAGE
    assert 1 < len(fake.requests) < 10
    assert "cannot reach http://server" in capsys.readouterr().err


def test_ctrl_c_pauses_and_waits_for_the_acknowledgement(fake, sleeps, capsys):
    fake.answers[STATUS] = [
        answer(200, status_object(), ETag='"v1"'),
        KeyboardInterrupt(),  # Ctrl-C during the long poll
        answer(200, status_object(state="paused", lines_finished=1600), ETag='"v3"'),
    ]
    fake.answers[("POST", "/pause/")] = answer(200, status_object(state="pausing"))
    assert long_task("follow", "7") == outcome.STOPPED
    out = capsys.readouterr().out
    assert "Ctrl-C: pausing operation 7" in out and "operation 7 paused after 1,600 rows" in out
    assert "resume it: long-task resume 7 --follow" in out


def test_a_second_ctrl_c_says_the_operation_is_pausing(fake, sleeps, capsys):
    """The server took the pause; the worker had not acknowledged it yet."""
    fake.answers[STATUS] = [answer(200, status_object(), ETag='"v1"'), KeyboardInterrupt(), KeyboardInterrupt()]
    fake.answers[("POST", "/pause/")] = answer(200, status_object(state="pausing"))
    assert long_task("follow", "7") == outcome.INTERRUPTED
    out = capsys.readouterr().out
    assert "pause requested: operation 7 is pausing" in out and "not waiting for it" in out
    assert "left as it is" not in out


def test_a_second_ctrl_c_before_the_pause_is_answered_says_so(fake, sleeps, capsys):
    """Whether the server took the pause is unknown: the operation may still be running."""
    fake.answers[STATUS] = [answer(200, status_object(), ETag='"v1"'), KeyboardInterrupt()]
    fake.answers[("POST", "/pause/")] = KeyboardInterrupt()
    assert long_task("follow", "7") == outcome.INTERRUPTED
    out = capsys.readouterr().out
    assert "before the server answered the pause: operation 7 may still be running" in out
    assert "long-task status 7" in out


# --- export and download -----------------------------------------------------------------------

EXPORT_CSV = b"name,city\nAnn,Paris\n"


@pytest.fixture
def export_server(fake) -> FakeServer:
    """Operation 8 exports operation 7: registered, started, completed, then its file."""
    fake.answers[("POST", "/register/")] = answer(201, {"op_id": 8, "op_type": "Export", "state": "registered"})
    fake.answers[("POST", "/api/operations/8/start/")] = answer(202, status_object(8, op_type="Export", state="queued"))
    done = status_object(8, op_type="Export", state="completed", lines_finished=1, finished_at="2026-11-29T10:00:03Z")
    fake.answers[("GET", "/api/operations/8/")] = answer(200, done, ETag='"v9"')
    fake.answers[("GET", "/api/operations/8/download/")] = csv_answer(EXPORT_CSV)
    return fake


def test_export_registers_follows_and_downloads(export_server, sleeps, outdir, capsys):
    target = outdir / "paris.csv"
    assert long_task("export", "7", "--filter", "city=Paris", "--filter", "kind=a=b", "-o", str(target)) == 0
    (register,) = export_server.asked("POST", "/register/")
    assert json.loads(register.content) == {
        "op_type": "Export",
        "source": 7,
        "filter": {"city": "Paris", "kind": "a=b"},
    }
    assert target.read_bytes() == EXPORT_CSV and list(outdir.iterdir()) == [target]
    captured = capsys.readouterr()
    assert captured.out == ""  # the progress goes to standard error: standard output may be the file
    assert "operation 8 completed in 2s: 1 rows exported" in captured.err and f"wrote {target}" in captured.err

    assert long_task("export", "7") == 0  # to standard output, no filter
    assert json.loads(export_server.asked("POST", "/register/")[-1].content) == {"op_type": "Export", "source": 7}
    assert capsys.readouterr().out == EXPORT_CSV.decode()


def test_an_export_that_cannot_start_is_withdrawn(export_server, capsys):
    message = "The source operation 7 is running: an Export needs a completed Upload"
    export_server.answers[("POST", "/api/operations/8/start/")] = answer(409, {"message": message})
    export_server.answers[("POST", "/terminate/")] = answer(200, status_object(8, state="terminated"))
    assert long_task("export", "7") == outcome.REFUSED
    assert f"{message} (operation 8 withdrawn)" in capsys.readouterr().err
    assert json.loads(export_server.asked("POST", "/terminate/")[0].content)["op_id"] == 8


def test_download_to_a_file(export_server, outdir, capsys):
    target = outdir / "out.csv"
    assert long_task("download", "8", "-o", str(target)) == 0
    assert target.read_bytes() == EXPORT_CSV and list(outdir.iterdir()) == [target]
    assert f"wrote {target} (20 B)" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("download", "code", "message"),
    [
        (answer(409, {"message": "This operation has no file to download"}), 1, "no file to download"),
        (answer(404, {"message": "Operation ID Invalid"}), 3, "Operation ID Invalid"),
        (answer(404, "<html><h1>Not Found</h1></html>"), 3, "HTTP 404 Not Found"),
        (answer(200, "<html>a login page</html>"), 3, "is a web page, not a download"),
    ],
)
def test_a_download_refused_writes_nothing(export_server, outdir, capsys, download, code, message):
    """Not a byte of an error page lands in the file, and a file that was there stays as it was."""
    export_server.answers[("GET", "/api/operations/8/download/")] = download
    target = outdir / "out.csv"
    assert long_task("download", "8", "-o", str(target)) == code
    assert message in capsys.readouterr().err
    assert not target.exists()
    target.write_text("before")
    assert long_task("download", "8", "-o", str(target)) == code
    assert (target.read_text(), list(outdir.iterdir())) == ("before", [target])


def test_a_download_cut_half_way_leaves_no_file(export_server, outdir, capsys):
    class Cut(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            yield b"name,city\n"
            raise httpx.ReadError("connection reset")

    export_server.answers[("GET", "/api/operations/8/download/")] = lambda request: httpx.Response(
        200, stream=Cut(), headers={"Content-Type": "text/csv"}
    )
    target = outdir / "out.csv"
    assert long_task("download", "8", "-o", str(target)) == outcome.USAGE
    assert "connection reset" in capsys.readouterr().err
    assert list(outdir.iterdir()) == []


def test_a_download_into_a_missing_directory_exits_3(export_server, outdir, capsys):
    assert long_task("download", "8", "-o", str(outdir / "nowhere" / "out.csv")) == outcome.USAGE
    assert "cannot write" in capsys.readouterr().err


def test_list_on_a_narrow_terminal_keeps_an_operation_to_a_line_and_leaves_out_the_least_telling(
    fake, capsys, monkeypatch
):
    header, running, failed = listed_on_a_terminal(fake, capsys, monkeypatch, columns=80)
    assert header.split() == ["id", "file", "state", "percent", "rows", "created", "reason"]
    assert running.split()[:3] == ["9", "people.csv", "running"]
    assert failed.startswith(" 8  a name with spa\u2026  failed") and failed.endswith("\u2026")
    assert max(len(line) for line in (header, running, failed)) <= 80
