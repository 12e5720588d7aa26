"""The README's "Try it" flow, run as written against `manage.py run` (what `make run` starts):
the web server and a worker in the foreground, stopped together by one Ctrl-C (SIGINT)."""

import json
import os
import re
import signal
import subprocess

import pytest

from operations.models import Operation, UploadedRow

from .conftest import ROOT, database_url
from .support import start_manage_run, wait_stopped

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]


def readme_flow() -> str:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- quickstart-flow.*?-->\n```sh\n(.*?)```", readme, re.S)
    assert match, "README.md lost its quickstart-flow block"
    return match.group(1)


def test_readme_flow_works_as_written(media_root, tmp_path):
    for name in (".venv", "manage.py"):
        (tmp_path / name).symlink_to(ROOT / name)
    run, port = start_manage_run(
        media_root=media_root, log_path=tmp_path / "run.log", cwd=tmp_path, PYTHONPATH=str(ROOT)
    )
    try:
        env = {**os.environ, "PORT": str(port), "PYTHONPATH": str(ROOT), "DATABASE_URL": database_url()}
        flow = subprocess.run(
            ["bash", "-c", readme_flow()], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )
        assert flow.returncode == 0, flow.stderr
        answers = [json.loads(line) for line in flow.stdout.splitlines() if line.startswith("{")]
    finally:
        os.killpg(run.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole group
        exit_code = wait_stopped(run, port)
    log = (tmp_path / "run.log").read_text(errors="replace")

    started, paused, status_1, status_2, resumed, final = answers[:6]
    assert started["message"] == "upload started"
    assert paused["success"] is True and paused["state"] == "paused"
    assert status_1 == status_2, "a paused operation's status holds still"
    assert resumed["state"] == "queued"
    assert final["state"] == "completed", final
    assert final["lines_finished"] == 100_000 and final["is_finished"] is True
    assert UploadedRow.objects.filter(operation_id=final["op_id"]).count() == 100_000

    started_2, paused_2, terminated = answers[6:9]
    assert started_2["message"] == "upload started"
    assert paused_2["state"] == "paused"
    assert terminated["state"] == "terminated", terminated
    assert not UploadedRow.objects.filter(operation_id=terminated["op_id"]).exists()
    assert not Operation.objects.get(pk=terminated["op_id"]).file
    # One Ctrl-C stopped both the server and the worker, the worker after its chunk.
    assert exit_code == 0, log
    assert re.search(r"worker \S+: stopped", log), log
