"""`manage.py op_status`: progress on the command line (SPEC §10), and `--follow`."""

import io
import os
import subprocess
import sys
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from long_task_shared import humanize
from operations.models import Operation
from tests.conftest import ROOT, database_url

S = Operation.State


def op_status(*args) -> str:
    out = io.StringIO()
    call_command("op_status", *args, stdout=out)
    return out.getvalue()


def table(output: str) -> dict[str, list[str]]:
    """The rows of the printed table by id (cells split on whitespace)."""
    lines = output.strip().splitlines()
    header = lines[0].split()
    assert header == [
        *["id", "type", "state", "owner", "percent", "finished", "failed", "rows/s", "eta"],
        *["created", "ran", "file", "reason"],
    ]
    # The created column is an age, "3m05s ago": two cells.
    return {cells[0]: cells for cells in (line.split() for line in lines[1:]) if cells[0].isdigit()}


@pytest.mark.django_db
def test_prints_the_figures_of_each_operation(user):
    running = Operation.objects.create(
        state=S.RUNNING,
        owner=user,
        file_size=1000,
        position=250,
        lines_finished=1000,
        lines_failed=3,
        rows_per_second=50.0,
    )
    done = Operation.objects.create(state=S.COMPLETED, file_size=1000, position=1000, lines_finished=4000)
    fresh = Operation.objects.create(state=S.REGISTERED)

    rows = table(op_status())

    # 25% of the bytes after 1000 rows: 3000 rows left at 50 rows/s is one minute.
    assert rows[str(running.pk)][:9] == [
        str(running.pk),
        "Upload",
        "running",
        "alice",
        "25.0%",
        "1,000",
        "3",
        "50",
        "1m00s",
    ]
    # Nobody works on a completed operation: no speed, no ETA; no owner: anonymous.
    assert rows[str(done.pk)][:9] == [str(done.pk), "Upload", "completed", "-", "100.0%", "4,000", "0", "-", "-"]
    assert rows[str(fresh.pk)][3:9] == ["-", "-", "0", "0", "-", "-"]
    assert list(rows) == [str(fresh.pk), str(done.pk), str(running.pk)]  # most recent first


@pytest.mark.django_db
def test_names_the_file_its_age_how_long_it_ran_and_why_it_failed():
    now = timezone.now()
    failed = Operation.objects.create(
        state=S.FAILED,
        file_name="people.csv",
        error="line 7: expected 4 fields, found 3\n" + "x" * 100,
        started_at=now - timedelta(seconds=65),
        finished_at=now,
    )
    Operation.objects.filter(pk=failed.pk).update(created_at=now - timedelta(minutes=3))
    fresh = Operation.objects.create(state=S.REGISTERED)
    rows = table(op_status())
    # created "3m00s ago" (two cells), ran, file, then the reason's words.
    assert rows[str(failed.pk)][9:13] == ["3m00s", "ago", "1m05s", "people.csv"]
    reason = " ".join(rows[str(failed.pk)][13:])
    assert reason.startswith("line 7: expected 4 fields, found 3 xxx") and reason.endswith("\u2026")
    assert len(reason) == 60
    assert rows[str(fresh.pk)][9:] == ["0s", "ago", "-", "-"]  # no reason unless failed


@pytest.mark.django_db
def test_counts_in_the_one_format_of_the_client_and_the_admin():
    """`1,000,000` as the client shows it and the docs promise, not `1000000`."""
    big = Operation.objects.create(
        state=S.RUNNING,
        file_size=4_000_000,
        position=1_000_000,
        lines_finished=1_000_000,
        lines_failed=12_345,
        rows_per_second=250_000.4,
    )
    row = table(op_status(str(big.pk)))[str(big.pk)]
    assert row[4:9] == ["25.0%", "1,000,000", "12,345", "250,000", "12s"]
    ops = Operation.objects.bulk_create(Operation() for _ in range(1_000))
    assert f"(20 of {humanize.count(len(ops) + 1)} shown" in op_status()


@pytest.mark.django_db
def test_selects_by_id_and_state():
    a, b, c = (Operation.objects.create(state=state) for state in (S.PAUSED, S.RUNNING, S.PAUSED))

    assert list(table(op_status(str(a.pk), str(b.pk)))) == [str(b.pk), str(a.pk)]
    assert list(table(op_status("--state", "paused"))) == [str(c.pk), str(a.pk)]
    assert list(table(op_status("--state", "paused", "--state", "running"))) == [str(c.pk), str(b.pk), str(a.pk)]
    assert op_status("--state", "failed").strip() == "No operations."


@pytest.mark.django_db
def test_shows_the_most_recent_twenty_by_default():
    ops = Operation.objects.bulk_create(Operation() for _ in range(25))
    output = op_status()
    assert list(table(output)) == [str(op.pk) for op in reversed(ops)][:20]
    assert "(20 of 25 shown" in output
    assert len(table(op_status("--limit", "30"))) == 25


@pytest.mark.django_db
def test_unknown_id_is_an_error_after_the_known_ones():
    op = Operation.objects.create()
    out = io.StringIO()
    with pytest.raises(CommandError, match=f"No operation with id {op.pk + 1000}"):
        call_command("op_status", str(op.pk), str(op.pk + 1000), stdout=out)
    assert list(table(out.getvalue())) == [str(op.pk)]


@pytest.mark.django_db
def test_watch_refreshes_until_ctrl_c(monkeypatch):
    Operation.objects.create(state=S.QUEUED)
    sleeps = []

    def sleep(seconds):
        sleeps.append(seconds)
        if len(sleeps) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr("operations.management.commands.op_status.time.sleep", sleep)
    # It would close the test's connection, which is inside the test's transaction.
    monkeypatch.setattr("operations.management.commands.op_status.close_old_connections", lambda: None)
    output = op_status("--watch", "2")
    assert sleeps == [2, 2]
    assert output.count("Ctrl-C stops") == 2
    assert output.count("queued") == 2


@pytest.mark.django_db(transaction=True)
def test_command_line_reports_unknown_id_without_traceback():
    op = Operation.objects.create(state=S.QUEUED)

    result = subprocess.run(
        [sys.executable, "manage.py", "op_status", str(op.pk), "999999"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": database_url()},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    assert list(table(result.stdout)) == [str(op.pk)]
    assert "No operation with id 999999" in result.stderr
    assert "Traceback" not in result.stderr

    bad = subprocess.run(
        [sys.executable, "manage.py", "op_status", "abc"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 2
    assert "invalid int value: 'abc'" in bad.stderr
    assert "Traceback" not in bad.stderr


@pytest.mark.parametrize(("seconds", "text"), [(None, "-"), (0.4, "0s"), (59.4, "59s"), (60, "1m00s"), (3725, "1h02m")])
def test_format_duration(seconds, text):
    assert humanize.duration(seconds) == text


# --- op_status ID --follow ------------------------------------------------------------------


@pytest.fixture
def no_connection_closing(monkeypatch):
    # It would close the test's connection, which is inside the test's transaction.
    monkeypatch.setattr("operations.management.commands.op_status.close_old_connections", lambda: None)


def follow_until(monkeypatch, op: Operation, states: list[str], *args) -> tuple[list[float], str, int]:
    """Run `op_status ID --follow`, moving the operation through `states`, one per refresh;
    return the sleeps, the output and the exit code."""
    sleeps = []

    def sleep(seconds):
        sleeps.append(seconds)
        Operation.objects.filter(pk=op.pk).update(state=states[len(sleeps) - 1], lines_finished=len(sleeps) * 100)

    monkeypatch.setattr("operations.management.commands.op_status.time.sleep", sleep)
    out = io.StringIO()
    try:
        call_command("op_status", str(op.pk), "--follow", *args, stdout=out)
        code = 0
    except SystemExit as exc:
        code = exc.code
    return sleeps, out.getvalue(), code


@pytest.mark.django_db
@pytest.mark.parametrize(("final", "code"), [(S.COMPLETED, 0), (S.FAILED, 1), (S.PAUSED, 2), (S.TERMINATED, 2)])
def test_follow_exits_when_the_operation_stops_moving(monkeypatch, no_connection_closing, final, code):
    op = Operation.objects.create(state=S.QUEUED)
    sleeps, output, exit_code = follow_until(monkeypatch, op, [S.RUNNING, S.RUNNING, S.PAUSING, final])
    assert exit_code == code
    assert sleeps == [1.0, 1.0, 1.0, 1.0]  # the default interval
    # Not a terminal: the header once, then a line whenever the row changed.
    lines = output.strip().splitlines()
    assert lines[0].split()[:3] == ["id", "type", "state"]
    assert [line.split()[2] for line in lines[1:]] == ["queued", "running", "running", "pausing", final]
    assert "\033" not in output


@pytest.mark.django_db
def test_follow_interval_is_an_option(monkeypatch, no_connection_closing):
    op = Operation.objects.create(state=S.RUNNING)
    sleeps, _, code = follow_until(monkeypatch, op, [S.COMPLETED], "--interval", "0.25")
    assert (sleeps, code) == ([0.25], 0)


@pytest.mark.django_db
def test_follow_of_a_finished_operation_returns_at_once(monkeypatch, no_connection_closing):
    op = Operation.objects.create(state=S.COMPLETED, lines_finished=7)
    sleeps, output, code = follow_until(monkeypatch, op, [])
    assert (sleeps, code) == ([], 0)
    assert table(output)[str(op.pk)][2] == "completed"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "args",
    [["--follow"], ["1", "2", "--follow"], ["1", "--follow", "--watch", "2"], ["1", "--follow", "--state", "running"]],
)
def test_follow_takes_one_operation(args):
    with pytest.raises(CommandError, match="--follow takes one operation id") as raised:
        call_command("op_status", *args, stdout=io.StringIO())
    assert raised.value.returncode == 3


@pytest.mark.django_db
def test_interval_without_follow_is_an_error():
    with pytest.raises(CommandError, match="--interval goes with --follow"):
        call_command("op_status", "--interval", "2", stdout=io.StringIO())


@pytest.mark.django_db(transaction=True)
def test_command_line_follow_exit_codes():
    paused = Operation.objects.create(state=S.PAUSED, lines_finished=5)

    def run(*args):
        return subprocess.run(
            [sys.executable, "manage.py", "op_status", *args],
            cwd=ROOT,
            env={**os.environ, "DATABASE_URL": database_url()},
            capture_output=True,
            text=True,
            timeout=60,
        )

    result = run(str(paused.pk), "--follow", "--interval", "0.1")
    assert result.returncode == 2, result.stderr
    assert list(table(result.stdout)) == [str(paused.pk)]
    missing = run("999999", "--follow")
    assert missing.returncode == 3
    assert "No operation with id 999999" in missing.stderr and "Traceback" not in missing.stderr
