"""`long-task`, the command-line client (SPEC §12): the installed command run as a subprocess
against a live server (`runserver`), with real workers where an import must run. Its parts and
its answers to a fake server are tests/unit/test_client_*.py."""

import csv
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from rest_framework.authtoken.models import Token

from long_task_shared import humanize, outcome
from operations.models import Operation, RowError
from tests.support import ROOT, csv_bytes, exact_chunks, running_server, stored_lines, wait_for

S = Operation.State
LONG_TASK = Path(sys.executable).parent / "long-task"
ESCAPE = "\x1b"
BAR = "━"


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
@pytest.mark.parametrize("size", [500, 2 * 1024**2], ids=["refused-as-it-streams", "refused-unread"])
def test_an_upload_over_the_limit_is_withdrawn_and_its_history_says_why(user, media_root, tmp_path, size):
    """Refused as it streams in, or before a byte is read (its Content-Length is over the limit,
    so its op_id field is never read either): the history says why it ended."""
    token = Token.objects.get_or_create(user=user)[0].key
    path = tmp_path / "big.csv"
    path.write_bytes(b"a,b\n" + b"1,2\n" * (size // 4))
    log = tmp_path / "web.log"
    with running_server(media_root=media_root, log_path=log, LONG_TASK_MAX_UPLOAD_BYTES="100") as (_, port):
        env = {**os.environ, "LONG_TASK_URL": f"http://127.0.0.1:{port}", "LONG_TASK_TOKEN": token}
        result = long_task(env, "upload", str(path))
    assert result.returncode == 3, result.stdout + result.stderr
    assert "The file is larger than the upload limit of 100 bytes" in result.stderr
    op = Operation.objects.get()
    details = list(op.events.order_by("pk").values_list("detail", "to_state"))
    assert op.state == S.TERMINATED, details
    assert ("input refused: The file is larger than the upload limit of 100 bytes", S.REGISTERED) in details


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


def following(env: dict, op_id: int, log: Path, *, preexec_fn=None) -> subprocess.Popen:
    """`long-task follow ID` in the background, its output (plain lines) into `log`."""
    with open(log, "w") as out:
        return subprocess.Popen(
            [str(LONG_TASK), "follow", str(op_id), "--interval", "0.1"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=preexec_fn,
        )


def wait_for_line(log: Path, text: str) -> None:
    wait_for(lambda: text in log.read_text(), what=repr(text))


def ended(client: subprocess.Popen) -> int:
    try:
        return client.wait(timeout=30)
    finally:
        if client.poll() is None:
            client.kill()


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
    """SIGINT while following: the operation is paused (not left to run), the client says how
    to resume it and exits 2; `resume --follow` then completes it, every row once. No worker
    runs until then, so the import waits, queued, for the Ctrl-C however slow the machine."""
    rows = 2_000
    path = tmp_path / "data.csv"
    path.write_bytes(csv_bytes(rows))
    assert long_task(server, "upload", str(path)).returncode == 0
    op_id = only_op_id()
    log = tmp_path / "client.out"
    client = following(server, op_id, log, preexec_fn=preexec_fn)
    wait_for_line(log, f"operation {op_id}: queued")
    client.send_signal(signal.SIGINT)
    code = ended(client)
    text = log.read_text()
    assert code == outcome.STOPPED, text
    assert Operation.objects.get(pk=op_id).state == S.PAUSED
    assert f"operation {op_id} paused after 0 rows" in text
    assert f"resume it: long-task resume {op_id} --follow" in text

    workers.start()
    resumed = long_task(server, "resume", str(op_id), "--follow", "--interval", "0.1")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"operation {op_id} resumed after 0 rows" in resumed.stdout
    assert stored_lines(op_id) == list(range(1, rows + 1))


@pytest.mark.processes
@pytest.mark.django_db(transaction=True)
def test_ctrl_c_mid_import_pauses_at_the_next_chunk_and_resume_finishes_it(server, workers, gate, tmp_path):
    """Ctrl-C while the import runs: the worker, held after its second chunk, acknowledges the
    pause at the next boundary; the client says where it stopped and exits 2; resume completes
    it, every row once."""
    rows, chunk = 5_000, 500
    held = gate("committed")
    workers.start(gate=held, **exact_chunks(chunk))
    path = tmp_path / "data.csv"
    path.write_bytes(csv_bytes(rows))
    assert long_task(server, "upload", str(path)).returncode == 0
    op_id = only_op_id()
    log = tmp_path / "client.out"
    client = following(server, op_id, log)
    held.release(held.wait_held(op_id, n=1))
    arrival = held.wait_held(op_id, n=2)
    wait_for_line(log, f"operation {op_id}: running")
    client.send_signal(signal.SIGINT)
    wait_for(lambda: Operation.objects.get(pk=op_id).state == S.PAUSING, what="the pause request")
    held.open(op_id)
    held.release(arrival)
    code = ended(client)
    text = log.read_text()
    assert code == outcome.STOPPED, text
    op = Operation.objects.get(pk=op_id)
    assert (op.state, op.lines_finished) == (S.PAUSED, 2 * chunk)
    assert f"operation {op_id} paused after {humanize.count(2 * chunk)} rows" in text

    resumed = long_task(server, "resume", str(op_id), "--follow", "--interval", "0.1")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert stored_lines(op_id) == list(range(1, rows + 1))


@pytest.mark.processes
@pytest.mark.django_db(transaction=True)
def test_a_second_ctrl_c_says_the_operation_is_pausing(server, user, tmp_path):
    """The first Ctrl-C asked for the pause; the second stops waiting for the worker and says
    where that left the operation: pausing. No worker runs, so none acknowledges the pause:
    the operation stays `pausing` however long the test takes."""
    op = Operation.objects.create(owner=user, state=S.RUNNING, lines_finished=1_500)
    log = tmp_path / "client.out"
    client = following(server, op.pk, log)
    wait_for_line(log, f"operation {op.pk}: running")
    client.send_signal(signal.SIGINT)
    wait_for_line(log, f"operation {op.pk}: pausing")  # the server took the pause
    client.send_signal(signal.SIGINT)
    code = ended(client)
    text = log.read_text()
    assert code == outcome.INTERRUPTED, text
    assert f"pause requested: operation {op.pk} is pausing" in text and "not waiting for it" in text
    assert "left as it is" not in text and "Traceback" not in text
    assert Operation.objects.get(pk=op.pk).state == S.PAUSING


def closed_pipe_run(env: dict, *args: str) -> subprocess.CompletedProcess:
    """The command with its standard output into a pipe whose reader is gone, as under
    `| head` once head has its lines."""
    reader, writer = os.pipe()
    os.close(reader)
    try:
        return subprocess.run(
            [str(LONG_TASK), *args], env=env, stdout=writer, stderr=subprocess.PIPE, text=True, timeout=120
        )
    finally:
        os.close(writer)


@pytest.mark.processes
@pytest.mark.django_db(transaction=True)
def test_output_into_a_closed_pipe_ends_quietly(server, user):
    """`long-task errors 6 | head`, `long-task list | head`: no traceback, exit 0."""
    op = Operation.objects.create(owner=user, state=S.COMPLETED, lines_finished=3, lines_failed=3)
    RowError.objects.bulk_create(RowError(operation=op, line_number=n, reason="bad", raw="x") for n in (2, 3, 4))
    for command in (["list"], ["errors", str(op.pk)], ["errors", str(op.pk), "--csv"], ["rows", str(op.pk)]):
        result = closed_pipe_run(server, *command)
        assert (result.returncode, result.stderr) == (0, ""), command


@pytest.mark.processes
@pytest.mark.django_db(transaction=True)
def test_export_and_download(server, workers, user, tmp_path):
    """`long-task export SOURCE --filter COL=VALUE -o FILE` registers an Export, follows it and
    writes its file; `long-task download ID` fetches it again. A download that is refused
    writes nothing."""
    workers.start()
    path = tmp_path / "data.csv"
    path.write_bytes(TRICKY_CSV.encode())
    assert long_task(server, "upload", str(path), "--follow", "--interval", "0.1").returncode == 0
    source = only_op_id()
    all_rows = long_task(server, "rows", str(source)).stdout

    target = tmp_path / "oslo.csv"
    result = long_task(server, "export", str(source), "--filter", "city=Oslo", "-o", str(target), "--interval", "0.1")
    assert result.returncode == 0, result.stdout + result.stderr
    export = Operation.objects.get(op_type="Export")
    assert (export.state, export.options) == (S.COMPLETED, {"source": source, "filter": {"city": "Oslo"}})
    header, *rows = list(csv.reader(io.StringIO(target.read_text())))
    assert (header, rows) == (["name", "comment", "city"], [["Eve", "ends with a newline\n", "Oslo"]])
    assert result.stdout == ""  # the progress goes to standard error
    assert f"operation {export.pk} completed" in result.stderr and f"wrote {target}" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix in (".csv", ".part")) == ["data.csv", "oslo.csv"]

    everything = long_task(server, "export", str(source), "--interval", "0.1")  # to standard output
    assert everything.returncode == 0, everything.stderr
    assert everything.stdout == all_rows
    again = long_task(server, "download", str(export.pk))
    assert (again.returncode, again.stdout) == (0, target.read_text())

    pending = Operation.objects.create(owner=user, op_type="Export", options={"source": source, "filter": {}})
    refused = tmp_path / "refused.csv"
    not_yet = long_task(server, "download", str(pending.pk), "-o", str(refused))
    assert not_yet.returncode == outcome.REFUSED
    assert "its file can be downloaded once it has completed" in not_yet.stderr
    unknown = long_task(server, "download", "999999", "-o", str(refused))
    assert (unknown.returncode, unknown.stderr.strip()) == (outcome.USAGE, "long-task: Operation ID Invalid")
    assert not refused.exists()


@pytest.mark.processes
@pytest.mark.django_db(transaction=True)
def test_upload_into_a_target_then_read_its_typed_rows(server, workers, tmp_path):
    """`long-task upload --target contacts --mapping` imports typed rows beside the
    application's own (a bad score is a row error); `rows --format jsonl` gives numbers as
    numbers and dates as ISO, under the file's header."""
    from contacts.models import Contact

    Contact.objects.create(name="Kept", email="kept@example.com")
    workers.start()
    path = tmp_path / "people.csv"
    path.write_text(
        "Full Name,Email,Signup Date,Score\n"
        "Ada,ada@example.com,2026-01-31,7\n"
        "Bob,bob@example.com,2026-02-01,abc\n"
        "Cleo,cleo@example.com,,12\n"
    )
    mapping = '{"Full Name": "name"}'
    uploaded = long_task(server, "upload", str(path), "--target", "contacts", "--mapping", mapping, "--follow")
    assert uploaded.returncode == 0, uploaded.stdout + uploaded.stderr
    op_id = Operation.objects.get().pk
    errors = long_task(server, "errors", str(op_id))
    assert 'line 2: Score: "abc" is not an integer' in errors.stdout, errors.stdout + errors.stderr

    rows = long_task(server, "rows", str(op_id), "--format", "jsonl")
    assert rows.returncode == 0, rows.stderr
    data = [json.loads(line)["data"] for line in rows.stdout.splitlines()]
    assert [(row["Full Name"], row["Signup Date"], row["Score"]) for row in data] == [
        ("Ada", "2026-01-31", 7),
        ("Cleo", None, 12),
    ]
    assert list(Contact.objects.values_list("name", flat=True)) == ["Kept", "Ada", "Cleo"]


def test_a_mapping_that_is_not_json_is_a_usage_error(server):
    run = long_task(server, "upload", str(ROOT / "README.md"), "--target", "contacts", "--mapping", "{name")
    assert run.returncode == outcome.USAGE
    assert "--mapping takes a JSON object" in run.stderr


@pytest.mark.processes
@pytest.mark.django_db(transaction=True)
def test_dry_run_then_import_the_same_stored_file(server, workers, tmp_path):
    """`long-task upload --dry-run --follow` ends with the totals by reason and the command that
    imports; `long-task import ID --follow` imports the file the dry run stored, with the same
    rejected lines, and a second import is refused (exit 1)."""
    from contacts.models import Contact

    Contact.objects.create(name="Kept", email="kept@example.com")
    workers.start()
    path = tmp_path / "people.csv"
    path.write_text(
        "name,email,score\n"
        "Ada,ada@example.com,7\n"
        "Bob,bob@example.com,abc\n"
        "Kim,kept@example.com,1\n"
        "Ada 2,ada@example.com,2\n"
    )
    checked = long_task(server, "upload", str(path), "--target", "contacts", "--dry-run", "--follow")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    dry_run = Operation.objects.get()
    said = checked.stdout + checked.stderr
    assert f"dry run {dry_run.pk} completed" in said and "1 rows would be imported, 3 rejected" in said
    assert "1  score is not an integer" in said and "1  email is already in the table" in said
    assert f"long-task import {dry_run.pk} --follow" in said
    assert list(Contact.objects.values_list("name", flat=True)) == ["Kept"]

    imported = long_task(server, "import", str(dry_run.pk), "--follow")
    assert imported.returncode == 0, imported.stdout + imported.stderr
    op = Operation.objects.exclude(pk=dry_run.pk).get()
    assert f"operation {op.pk} imports the file that dry run {dry_run.pk} checked" in imported.stdout + imported.stderr
    assert list(Contact.objects.values_list("name", flat=True)) == ["Kept", "Ada"]
    lines = [list(e.row_errors.values_list("line_number", flat=True)) for e in (dry_run, op)]
    assert lines == [[2, 3, 4], [2, 3, 4]]

    again = long_task(server, "import", str(dry_run.pk))
    assert again.returncode == outcome.REFUSED and "imported already" in again.stderr
