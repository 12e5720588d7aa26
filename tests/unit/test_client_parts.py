"""`long-task`, the command-line client (SPEC §12): its parts, without a server. The number
formats and exit codes it shares with the server, its displays, what it imports, its help."""

import io
import json
import subprocess
import sys

import pytest
from rich.console import Console

from long_task_client import cli
from long_task_client.display import BarDisplay, PlainDisplay
from long_task_shared import humanize, outcome
from tests.support import ROOT

ESCAPE = "\x1b"
BAR = "━"


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
    words = (
        "upload",
        "follow",
        "status",
        "pause",
        "resume",
        "terminate",
        "list",
        "errors",
        "rows",
        "export",
        "download",
    )
    for word in words:
        assert f"    {word}" in text
    assert "LONG_TASK_URL" in text and "LONG_TASK_TOKEN" in text
    for line in (
        "0    completed",
        "1    the operation failed",
        "2    the operation is paused or terminated",
        "3    usage",
        "130  a second Ctrl-C while following: the client stops waiting for the pause",
    ):
        assert line in text


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
