"""`make run` (`manage.py run`): one Ctrl-C stops the server and the worker, the worker
gracefully, however the command was started."""

import os
import signal
import subprocess
import sys

import pytest

from operations.models import Operation

from .conftest import ROOT, csv_bytes, database_url, wait_for
from .support import free_port, port_open

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]


def start_run(media_root, log_path, *, chunk_delay: float = 0.0, **popen) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.worker_settings",
        "DATABASE_URL": database_url(),
        "LONG_TASK_MEDIA_ROOT": str(media_root),
        "LONG_TASK_TEST_CHUNK_DELAY": str(chunk_delay),
        "LONG_TASK_CHUNK_SECONDS": "0.01",
    }
    with open(log_path, "wb") as log:
        run = subprocess.Popen(
            [sys.executable, "manage.py", "run", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, as in a terminal
            **popen,
        )
    wait_for(lambda: port_open(port), timeout=30, what="the server of manage.py run")
    wait_for(lambda: ": started" in log_path.read_text(errors="replace"), timeout=30, what="its worker")
    return run, port


def stopped(run: subprocess.Popen, port: int) -> int:
    try:
        code = run.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(run.pid, signal.SIGKILL)
        raise
    assert not port_open(port), "the server outlived manage.py run"
    return code


def test_ctrl_c_during_an_import_gives_the_operation_back_at_its_checkpoint(start_upload, media_root, tmp_path):
    run, port = start_run(media_root, tmp_path / "run.log", chunk_delay=0.5)
    op_id = start_upload(csv_bytes(2_000))
    wait_for(lambda: Operation.objects.get(pk=op_id).lines_finished > 0, what="first chunk")

    os.killpg(run.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole group

    assert stopped(run, port) == 0
    log = (tmp_path / "run.log").read_text(errors="replace")
    op = Operation.objects.get(pk=op_id)
    assert op.state == Operation.State.QUEUED and op.lease_owner == "", log
    assert op.events.filter(to_state=Operation.State.QUEUED, detail="worker stopping").exists()


def test_sigint_stops_it_when_a_shell_started_it_with_sigint_ignored(media_root, tmp_path):
    """`make run &` in a script: the shell's background job starts with SIGINT ignored."""
    run, port = start_run(
        media_root, tmp_path / "run.log", preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)
    )
    run.send_signal(signal.SIGINT)
    assert stopped(run, port) == 0
    assert "stopped" in (tmp_path / "run.log").read_text(errors="replace")
