"""`long-task`, the command-line client (SPEC §12): unit tests of its parts, and the installed
command run as a subprocess against a live server (`runserver`) with real workers."""

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from rest_framework.authtoken.models import Token
from rich.console import Console

from long_task_client import cli
from long_task_client.api import Api
from long_task_client.display import BarDisplay, PlainDisplay
from long_task_shared import humanize, outcome
from operations.models import Operation, RowError
from tests.support import ROOT, csv_bytes, free_port, running_server, stored_lines, wait_for

S = Operation.State
LONG_TASK = Path(sys.executable).parent / "long-task"
ESCAPE = "\x1b"
BAR = "━"


# --- parts ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "-"), (0.4, "0s"), (12, "12s"), (59.4, "59s"), (185, "3m05s"), (3600, "1h00m"), (6540, "1h49m")],
)
def test_one_duration_format(seconds, text):
    assert humanize.duration(seconds) == text


def test_counts_and_sizes():
    assert (humanize.count(1234567), humanize.count(212123.6), humanize.count(None)) == ("1,234,567", "212,124", "-")
    assert [humanize.size(n) for n in (812, 4_200, 75_000_000, 2_100_000_000)] == [
        "812 B",
        "4.2 kB",
        "75.0 MB",
        "2.1 GB",
    ]


def test_exit_codes_by_state():
    assert [outcome.exit_code(state) for state in ("completed", "failed", "paused", "terminated")] == [0, 1, 2, 2]
    assert [outcome.exit_code(state) for state in ("registered", "queued", "running", "pausing", "terminating")] == [
        None
    ] * 5


def test_the_client_imports_neither_django_nor_the_server():
    code = "import sys, long_task_client.cli; print(sorted({m.split('.')[0] for m in sys.modules}))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    modules = json.loads(result.stdout.replace("'", '"'))
    assert "httpx" in modules and "rich" in modules
    assert not {"django", "rest_framework", "operations", "long_task"} & set(modules)


def test_help_documents_the_commands_and_exit_codes(capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    for word in ("upload", "follow", "status", "pause", "resume", "terminate", "list", "errors", "rows"):
        assert f"    {word}" in text
    assert "LONG_TASK_URL" in text and "LONG_TASK_TOKEN" in text
    for line in (
        "0    completed",
        "1    the operation failed",
        "2    the operation is paused or terminated",
        "3    usage",
    ):
        assert line in text


@pytest.mark.parametrize(
    "argv",
    [[], ["status"], ["status", "abc"], ["status", "0"], ["nonsense"], ["follow", "1", "--interval", "0"]],
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


class FakeServer:
    """What the client gets instead of a server: `answers[(method, path)] = (status, body)`."""

    def __init__(self):
        self.answers: dict[tuple[str, str], tuple[int, object]] = {}
        self.requests: list[httpx.Request] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        status, body = self.answers[(request.method, request.url.path)]
        if isinstance(body, str):
            return httpx.Response(status, text=body, headers={"Content-Type": "text/html"})
        return httpx.Response(status, json=body)


@pytest.fixture
def fake(monkeypatch) -> FakeServer:
    server = FakeServer()
    monkeypatch.setattr(cli, "Api", lambda url, token: Api(url, token, transport=httpx.MockTransport(server.handle)))
    return server


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
    fake.answers[("POST", "/pause/")] = (status, body)
    assert cli.main(["--url", "http://server", "--token", "t0k", "pause", "7"]) == code
    assert message in capsys.readouterr().err
    request = fake.requests[0]
    assert request.headers["Authorization"] == "Token t0k"
    assert json.loads(request.content)["op_id"] == 7


def test_terminate_of_a_running_operation_says_what_to_do(fake, capsys):
    fake.answers[("POST", "/terminate/")] = (409, {"message": "Pause the operation"})
    assert cli.main(["--url", "http://server", "terminate", "7"]) == outcome.REFUSED
    err = capsys.readouterr().err
    assert "Pause the operation" in err and "long-task pause 7" in err and "--force" in err


def status_object(op_id=7, **fields) -> dict:
    base = {
        "op_id": op_id,
        "op_type": "Upload",
        "state": "running",
        "lines_finished": 1500,
        "lines_failed": 2,
        "total_lines": None,
        "percent": 42.5,
        "rows_per_second": 250000.0,
        "eta_seconds": 185.0,
        "error": "",
        "created_at": "2026-11-29T10:00:00Z",
        "started_at": "2026-11-29T10:00:01Z",
        "finished_at": None,
        "updated_at": "2026-11-29T10:00:02Z",
    }
    return {**base, **fields}


def test_status_in_words_and_as_json(fake, capsys):
    fake.answers[("GET", "/api/operations/7/")] = (200, status_object())
    assert cli.main(["--url", "http://server", "status", "7"]) == 0
    text = capsys.readouterr().out
    assert "operation 7 (Upload): running" in text
    assert "42.5%, 1,500 rows done, 2 rejected" in text and "250,000 rows/s, ETA 3m05s" in text
    assert cli.main(["status", "7", "--url", "http://server", "--json"]) == 0  # options after the command too
    assert json.loads(capsys.readouterr().out) == status_object()


def test_follow_long_polls_with_the_last_etag(fake, monkeypatch):
    """Following asks the server to hold the answer until the status changes (a long poll, with
    the version it has), instead of asking again every interval: 304s while nothing moves."""
    answers = iter(
        [
            httpx.Response(200, json=status_object(state="queued"), headers={"ETag": '"v1"'}),
            httpx.Response(304, headers={"ETag": '"v1"'}),
            httpx.Response(200, json=status_object(state="completed", lines_finished=10), headers={"ETag": '"v2"'}),
        ]
    )
    fake.handle = lambda request: (fake.requests.append(request), next(answers))[1]
    monkeypatch.setattr(cli.time, "sleep", lambda seconds: None)
    assert cli.main(["--url", "http://server", "follow", "7"]) == outcome.COMPLETED
    waits = [float(request.url.params["wait_for_change"]) for request in fake.requests]
    # The first question, with no version yet, is answered at once; then long polls.
    assert waits == [0, cli.LONG_POLL_SECONDS, cli.LONG_POLL_SECONDS] and cli.LONG_POLL_SECONDS > 1
    assert [request.headers.get("If-None-Match") for request in fake.requests] == [None, '"v1"', '"v1"']


def test_plain_display_prints_state_changes_and_no_escapes():
    out = io.StringIO()
    display = PlainDisplay(out)
    display.upload_started(7, "big.csv", 1000)
    display.upload_progress(500)
    display.upload_finished()
    display.status(
        status_object(
            state="queued", percent=0.0, lines_finished=0, lines_failed=0, rows_per_second=None, eta_seconds=None
        )
    )
    display.status(status_object())
    display.status(status_object(lines_finished=1600))  # same state, within 5 s: no line
    lines = out.getvalue().splitlines()
    assert lines[0] == "operation 7: uploading big.csv (1.0 kB)"
    assert lines[1].startswith("uploaded big.csv (1.0 kB) in 0s")
    assert lines[2] == "operation 7: queued  0 rows  0.0%"
    assert lines[3] == "operation 7: running  1,500 rows  2 failed  250,000 rows/s  ETA 3m05s  42.5%"
    assert len(lines) == 4 and ESCAPE not in out.getvalue()


def test_bar_display_draws_the_upload_and_the_import():
    out = io.StringIO()
    display = BarDisplay(Console(file=out, force_terminal=True, width=120))
    display.upload_started(7, "big.csv", 1_000_000)
    display.upload_progress(400_000)
    display.upload_finished()
    display.status(status_object())
    display.stop()
    text = out.getvalue()
    assert BAR in text and "upload" in text and "import" in text
    assert "1,500 rows" in text and "250,000 rows/s" in text and "ETA 3m05s" in text and "42%" in text


# --- the command against a live server --------------------------------------------------------


@pytest.fixture
def server(user, media_root, tmp_path):
    """A live server on the test database, and the environment that points the client at it."""
    token = Token.objects.get_or_create(user=user)[0].key
    with running_server(media_root=media_root, log_path=tmp_path / "web.log") as (_, port):
        yield {**os.environ, "LONG_TASK_URL": f"http://127.0.0.1:{port}", "LONG_TASK_TOKEN": token}


def long_task(env: dict, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    assert LONG_TASK.exists(), "make install puts the client in .venv/bin/long-task"
    return subprocess.run([str(LONG_TASK), *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def only_op_id() -> int:
    return Operation.objects.get().pk


TRICKY_CSV = (
    "\ufeffname,comment,city\n"
    'Ann,"said ""hello"", then left",Zürich\n'
    'Bob,"two\nlines, and a comma",東京\n'
    "broken,row\n"
    '"Dee","emoji 🎉",São Paulo\r\n'
    "\n"
    'Eve,"ends with a newline\n",Oslo\n'
)


@pytest.mark.processes
@pytest.mark.django_db(transaction=True)
def test_upload_follow_reaches_completed_and_exits_0(server, workers, tmp_path):
    workers.start()
    path = tmp_path / "data.csv"
    path.write_bytes(csv_bytes(5_000))

    result = long_task(server, "upload", str(path), "--follow", "--interval", "0.1")

    assert result.returncode == 0, result.stdout + result.stderr
    op = Operation.objects.get()
    assert (op.state, op.lines_finished) == (S.COMPLETED, 5_000)
    assert stored_lines(op.pk) == list(range(1, 5_001))
    assert f"operation {op.pk} completed" in result.stdout
    assert "5,000 rows imported, 0 rejected" in result.stdout


@pytest.mark.processes
@pytest.mark.django_db(transaction=True)
def test_piped_output_is_plain_lines(server, workers, tmp_path):
    workers.start()
    path = tmp_path / "data.csv"
    path.write_bytes(TRICKY_CSV.encode())

    result = long_task(server, "upload", str(path), "--follow", "--interval", "0.1")

    assert result.returncode == 0, result.stdout + result.stderr
    op_id = only_op_id()
    text = result.stdout
    assert ESCAPE not in text and BAR not in text and "\r" not in text
    lines = text.splitlines()
    size = humanize.size(len(TRICKY_CSV.encode()))
    assert lines[0] == f"operation {op_id}: uploading data.csv ({size})"
    assert lines[1].startswith(f"uploaded data.csv ({size}) in ")
    assert f"operation {op_id}: completed  5 rows  1 failed  100.0%" in lines
    assert lines[-3].startswith(f"operation {op_id} completed in ")
    assert lines[-3].endswith(": 4 rows imported, 1 rejected")
    assert f"  the rejected rows: long-task errors {op_id}" in lines


@pytest.mark.processes
@pytest.mark.django_db(transaction=True)
def test_rows_csv_of_a_completed_import_equals_the_accepted_rows(server, workers, tmp_path):
    workers.start()
    path = tmp_path / "data.csv"
    path.write_bytes(TRICKY_CSV.encode())
    assert long_task(server, "upload", str(path), "--follow", "--interval", "0.1").returncode == 0
    op_id = str(only_op_id())

    accepted = [row for row in csv.reader(io.StringIO(TRICKY_CSV.removeprefix("\ufeff"))) if len(row) == 3]
    to_stdout = long_task(server, "rows", op_id)
    assert to_stdout.returncode == 0, to_stdout.stderr
    assert list(csv.reader(io.StringIO(to_stdout.stdout))) == accepted

    target = tmp_path / "rows.csv"
    to_file = long_task(server, "rows", op_id, "--format", "csv", "-o", str(target))
    assert to_file.returncode == 0 and f"wrote {target}" in to_file.stderr
    assert target.read_text() == to_stdout.stdout
    assert not (tmp_path / "rows.csv.part").exists()

    jsonl = long_task(server, "rows", op_id, "--format", "jsonl")
    assert [json.loads(line)["data"]["name"] for line in jsonl.stdout.splitlines()] == ["Ann", "Bob", "Dee", "Eve"]

    errors = long_task(server, "errors", op_id)
    assert errors.stdout == "line 3: expected 3 fields, found 2: broken,row\n"
    errors_csv = long_task(server, "errors", op_id, "--csv")
    assert list(csv.reader(io.StringIO(errors_csv.stdout)))[1] == ["3", "expected 3 fields, found 2", "broken,row"]
    assert RowError.objects.count() == 1


def ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.processes
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "preexec_fn",
    # A background job of a shell (a script's `long-task follow 7 &`, a test run started with
    # `&`) starts with SIGINT ignored; `kill -INT` must pause all the same.
    [None, ignore_sigint],
    ids=["sigint-default", "sigint-ignored-at-start"],
)
def test_ctrl_c_while_following_pauses_and_exits_2(server, workers, tmp_path, preexec_fn):
    """SIGINT while following: the operation is paused (not left running), the client says how
    to resume it and exits 2; `resume --follow` then completes it, every row once."""
    workers.start(chunk_delay=0.2)
    rows = 20_000
    path = tmp_path / "data.csv"
    path.write_bytes(csv_bytes(rows))
    log = tmp_path / "client.out"
    with open(log, "w") as out:
        client = subprocess.Popen(
            [str(LONG_TASK), "upload", str(path), "--follow", "--interval", "0.1"],
            env=server,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=preexec_fn,
        )
        try:
            op = wait_for(lambda: Operation.objects.filter(lines_finished__gt=0).first(), what="the first chunk")
            client.send_signal(signal.SIGINT)
            code = client.wait(timeout=30)
        finally:
            if client.poll() is None:
                client.kill()
    text = log.read_text()
    assert code == outcome.STOPPED, text
    op.refresh_from_db()
    assert op.state == S.PAUSED
    assert 0 < op.lines_finished < rows
    assert f"operation {op.pk} paused after {op.lines_finished:,} rows" in text
    assert f"resume it: long-task resume {op.pk} --follow" in text
    time.sleep(0.5)
    assert Operation.objects.get(pk=op.pk).lines_finished == op.lines_finished  # it holds still

    workers.stop_all()
    workers.start()  # a fast one
    resumed = long_task(server, "resume", str(op.pk), "--follow", "--interval", "0.1")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"operation {op.pk} resumed after {op.lines_finished:,} rows" in resumed.stdout
    assert stored_lines(op.pk) == list(range(1, rows + 1))


@pytest.mark.processes
@pytest.mark.django_db(transaction=True)
def test_a_second_ctrl_c_leaves_the_operation_as_it_is(server, workers, tmp_path):
    # Each chunk holds its transaction for 2 s, so the pause waits (for the worker's
    # acknowledgement, or on SQLite for the write lock) long enough to be interrupted.
    workers.start(chunk_delay=2.0)
    path = tmp_path / "data.csv"
    path.write_bytes(csv_bytes(5_000))
    log = tmp_path / "client.out"
    with open(log, "w") as out:
        client = subprocess.Popen(
            [str(LONG_TASK), "upload", str(path), "--follow", "--interval", "0.1"],
            env=server,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            op = wait_for(lambda: Operation.objects.filter(state=S.RUNNING).first(), what="running")
            time.sleep(0.3)
            client.send_signal(signal.SIGINT)
            wait_for(lambda: "Ctrl-C: pausing" in log.read_text(), what="the pause")
            client.send_signal(signal.SIGINT)
            code = client.wait(timeout=30)
        finally:
            if client.poll() is None:
                client.kill()
    text = log.read_text()
    assert code == outcome.INTERRUPTED, text
    assert f"operation {op.pk} left as it is" in text
    assert "Traceback" not in text
