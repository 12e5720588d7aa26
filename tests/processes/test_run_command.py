"""`make run` (`manage.py run`): one Ctrl-C stops the server and the worker, the worker
gracefully, however the command was started."""

import os
import signal

import pytest

from operations.models import Operation
from tests.support import csv_bytes, exact_chunks, start_manage_run, wait_for, wait_stopped

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]


def test_ctrl_c_during_an_import_gives_the_operation_back_at_its_checkpoint(start_upload, media_root, tmp_path, gate):
    """The worker is held inside its second chunk when the Ctrl-C comes, and let go once it has
    heard it: the chunk commits and the operation goes back at that checkpoint."""
    held = gate("written")
    log_path = tmp_path / "run.log"
    run, port = start_manage_run(
        media_root=media_root,
        log_path=log_path,
        DJANGO_SETTINGS_MODULE="tests.worker_settings",
        **held.env(),
        **exact_chunks(500),
    )
    op_id = start_upload(csv_bytes(2_000))
    in_flight = held.pass_through(op_id, "written", 1)

    os.killpg(run.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole group
    wait_for(lambda: "stopping after the current chunk" in log_path.read_text(errors="replace"), what="the stop")
    held.release(in_flight)

    assert wait_stopped(run, port) == 0
    log = (tmp_path / "run.log").read_text(errors="replace")
    op = Operation.objects.get(pk=op_id)
    assert op.state == Operation.State.QUEUED and op.lease_owner == "", log
    assert op.lines_finished == 1_000
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
