"""The README's "Try it" flow, run as written against `manage.py run` (what `make run` starts):
the web server and a worker in the foreground, stopped together by one Ctrl-C (SIGINT)."""

import json
import os
import re
import signal
import subprocess

import pytest

from operations.models import Operation, UploadedRow
from tests.conftest import ROOT, database_url
from tests.support import start_manage_run, wait_stopped

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
        # -e and pipefail: every command of the block must succeed, curl's included.
        flow = subprocess.run(
            ["bash", "-eo", "pipefail", "-c", readme_flow()],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert flow.returncode == 0, flow.stdout[-3000:] + flow.stderr
        # Pretty-printed JSON answers, between the client's plain lines.
        answers = [json.loads(found) for found in re.findall(r"^\{$.*?^\}$", flow.stdout, re.S | re.M)]
    finally:
        os.killpg(run.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole group
        exit_code = wait_stopped(run, port)
    log = (tmp_path / "run.log").read_text(errors="replace")

    lines = flow.stdout.splitlines()
    client_done = [
        line for line in lines if re.fullmatch(r"operation \d+ completed in .*: 1,000,000 rows imported.*", line)
    ]
    assert len(client_done) == 2, flow.stdout  # the client's upload --follow, and its follow
    started, paused, status_1, status_2, resumed, final, paused_2, terminated = answers
    assert started["message"] == "upload started"
    assert paused["success"] is True and paused["state"] == "paused"
    assert 0 < paused["lines_finished"] < 1_000_000, "the pause landed mid-run"
    assert status_1 == status_2, "a paused operation's status holds still"
    assert status_1["lines_finished"] == paused["lines_finished"]
    assert resumed["state"] == "queued"
    assert final["state"] == "completed", final
    assert final["lines_finished"] == 1_000_000 and final["is_finished"] is True
    assert UploadedRow.objects.filter(operation_id=final["op_id"]).count() == 1_000_000

    assert paused_2["state"] == "paused"
    assert terminated["state"] == "terminated", terminated
    assert not UploadedRow.objects.filter(operation_id=terminated["op_id"]).exists()
    assert not Operation.objects.get(pk=terminated["op_id"]).file
    # One Ctrl-C stopped both the server and the worker, the worker after its chunk.
    assert exit_code == 0, log
    assert re.search(r"worker \S+: stopped", log), log
