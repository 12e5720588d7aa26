"""`make run` (`manage.py run`): one Ctrl-C stops the server and the worker, the worker
gracefully, however the command was started."""

import os
import signal

import pytest

from operations.models import Operation
from tests.support import csv_bytes, start_manage_run, wait_for, wait_stopped

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]


def test_ctrl_c_during_an_import_gives_the_operation_back_at_its_checkpoint(start_upload, media_root, tmp_path):
    run, port = start_manage_run(
        media_root=media_root,
        log_path=tmp_path / "run.log",
        DJANGO_SETTINGS_MODULE="tests.worker_settings",
        LONG_TASK_TEST_CHUNK_DELAY="0.5",
        LONG_TASK_CHUNK_SECONDS="0.01",
    )
    op_id = start_upload(csv_bytes(2_000))
    wait_for(lambda: Operation.objects.get(pk=op_id).lines_finished > 0, what="first chunk")

    os.killpg(run.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole group

    assert wait_stopped(run, port) == 0
    log = (tmp_path / "run.log").read_text(errors="replace")
    op = Operation.objects.get(pk=op_id)
    assert op.state == Operation.State.QUEUED and op.lease_owner == "", log
    assert op.events.filter(to_state=Operation.State.QUEUED, detail="worker stopping").exists()


def test_sigint_stops_it_when_a_shell_started_it_with_sigint_ignored(media_root, tmp_path):
    """`make run &` in a script: the shell's background job starts with SIGINT ignored."""
    run, port = start_manage_run(
        media_root=media_root,
        log_path=tmp_path / "run.log",
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    run.send_signal(signal.SIGINT)
    assert wait_stopped(run, port) == 0
    assert "stopped" in (tmp_path / "run.log").read_text(errors="replace")
