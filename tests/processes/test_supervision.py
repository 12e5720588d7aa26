"""Processes that never orphan (SPEC §2, §11; docs/deployment.md): whatever signals reach
`make run` or its `manage.py run`, every process of the tree ends within a bound and frees the
port, and the worker gives its operation back at its checkpoint when the signals let it.

Each test collects the tree (make, manage.py run, runserver, process_tasks) before it signals,
with an import running, and kills whatever survives afterwards, so that a failure leaves no
orphan behind for the next test."""

import os
import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest

from operations.models import Operation
from tests.gate import Gate
from tests.support import (
    ROOT,
    csv_bytes,
    database_url,
    exact_chunks,
    free_port,
    port_open,
    procfile,
    procfile_environment,
    start_make_run,
    start_manage_run,
    wait_for,
)

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]

ALL_GONE_SECONDS = 10
# A web worker looks at its parent every second; the machine is loaded.
ORPHANS_GONE_SECONDS = 30
STOPPING = "stopping after the current chunk"


@pytest.fixture
def held(gate) -> Gate:
    """The gate of these tests: the run's worker is held inside each chunk (rows written, not
    committed) until the test lets it go, so that a signal lands while a chunk is in flight."""
    return gate("written")


def gated(held: Gate) -> dict[str, str]:
    """The environment of a run whose worker `held` holds, with chunks of 500 rows."""
    return {"DJANGO_SETTINGS_MODULE": "tests.worker_settings", **held.env(), **exact_chunks(500)}


@pytest.fixture
def tree():
    """Collects process trees; at teardown, SIGKILL to whatever of them still runs."""
    collected: list[psutil.Process] = []

    def collect(pid: int, size: int) -> list[psutil.Process]:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
        assert len(processes) == size, [p.cmdline() for p in processes]
        collected.extend(processes)
        return processes

    yield collect
    for process in running(collected):
        process.kill()


def running(processes: list[psutil.Process]) -> list[psutil.Process]:
    """Those still running (a zombie has ended; only its exit status waits to be read)."""
    alive = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
        except psutil.NoSuchProcess:
            pass
    return alive


def assert_all_gone(processes: list[psutil.Process], port: int, root: subprocess.Popen) -> None:
    """Every process of the tree ends within ALL_GONE_SECONDS, and the port is free."""
    deadline = time.monotonic() + ALL_GONE_SECONDS
    while running(processes) and time.monotonic() < deadline:
        root.poll()  # reap our own child, which would otherwise stay a zombie
        time.sleep(0.05)
    survivors = [f"{p.pid} {' '.join(p.cmdline()[1:4])}" for p in running(processes)]
    assert not survivors, f"outlived the stop: {survivors}"
    root.wait(timeout=1)
    assert not port_open(port), "the port is still taken"


def importing(start_upload, held: Gate) -> int:
    """An import whose first chunk has committed, its worker held inside the second."""
    op_id = start_upload(csv_bytes(5_000))
    held.pass_through(op_id, "written", 1)
    return op_id


def let_go_once_stopping(held: Gate, log_path) -> None:
    """Once the worker has heard its stop signal, let it finish the chunk in flight."""
    wait_for(lambda: STOPPING in log_path.read_text(errors="replace"), what="the worker to hear the stop")
    held.open_all()


def assert_given_back(op_id: int, log: str) -> None:
    op = Operation.objects.get(pk=op_id)
    assert op.state == Operation.State.QUEUED and op.lease_owner == "", (op.state, op.lease_owner, log[-3000:])
    assert op.events.filter(to_state=Operation.State.QUEUED, detail="worker stopping").exists()


def sigterm_twice(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    time.sleep(0.05)
    process.send_signal(signal.SIGTERM)


# (what is started, how it is signalled, what `manage.py run` exits with when it is the one started)
SEQUENCES = [
    # A Ctrl-C in the terminal of `make run`: SIGINT to its whole group.
    pytest.param("make", lambda make: os.killpg(make.pid, signal.SIGINT), None, id="ctrl-c-to-make-run"),
    # `kill PID`, `docker stop`, systemd's KillMode=mixed: SIGTERM to `manage.py run` alone.
    pytest.param("manage", lambda run: run.send_signal(signal.SIGTERM), 0, id="sigterm-once-to-manage-run"),
    # Two SIGTERMs 50 ms apart, as from a manager that also forwards one: a single request.
    pytest.param("manage", sigterm_twice, 0, id="sigterm-twice-quickly-to-manage-run"),
    # The reproduction: SIGTERM to the whole group (`kill -TERM -PGID`, supervisord's
    # stopasgroup); make passes it on to its child, so `manage.py run` gets it twice.
    pytest.param("make", lambda make: os.killpg(make.pid, signal.SIGTERM), None, id="sigterm-to-make-run-group"),
    # The terminal of `make run` closed: its shell sends SIGHUP to the job's group.
    pytest.param("make", lambda make: os.killpg(make.pid, signal.SIGHUP), None, id="sighup-to-make-run-group"),
    # SIGKILL of `manage.py run`, the children's parent: no handler runs; the kernel sends each
    # child the SIGTERM it asked for (PR_SET_PDEATHSIG).
    pytest.param("manage", lambda run: run.send_signal(signal.SIGKILL), -9, id="sigkill-of-manage-run"),
    # SIGKILL of make (an IDE's stop button, the OOM killer): `manage.py run` gets its SIGTERM
    # from the kernel (--stop-with-parent).
    pytest.param("make", lambda make: make.send_signal(signal.SIGKILL), None, id="sigkill-of-make"),
]


@pytest.mark.parametrize(("started", "send", "exit_code"), SEQUENCES)
def test_no_process_outlives_the_stop_and_the_operation_goes_back(
    started, send, exit_code, start_upload, media_root, tmp_path, tree, held
):
    start = start_make_run if started == "make" else start_manage_run
    root, port = start(media_root=media_root, log_path=tmp_path / "run.log", **gated(held))
    processes = tree(root.pid, 4 if started == "make" else 3)
    op_id = importing(start_upload, held)

    send(root)
    let_go_once_stopping(held, tmp_path / "run.log")

    assert_all_gone(processes, port, root)
    if exit_code is not None:
        assert root.returncode == exit_code
    assert_given_back(op_id, (tmp_path / "run.log").read_text(errors="replace"))


def test_sigterm_to_every_process_of_the_tree(start_upload, media_root, tmp_path, tree, held):
    """SIGTERM to every process at once, as systemd's default KillMode=control-group sends it:
    the worker also gets one from `manage.py run`, so it may exit at once, its operation left to
    its lease (docs/deployment.md); nothing outlives the run either way."""
    run, port = start_manage_run(media_root=media_root, log_path=tmp_path / "run.log", **gated(held))
    processes = tree(run.pid, 3)
    importing(start_upload, held)

    for process in processes:
        process.send_signal(signal.SIGTERM)
    let_go_once_stopping(held, tmp_path / "run.log")

    assert_all_gone(processes, port, run)
    assert run.returncode == 0


def test_a_later_second_ctrl_c_stops_at_once(start_upload, media_root, tmp_path, tree, held):
    """A second Ctrl-C after the first one's burst is a second request: the worker gets its
    second SIGTERM and leaves its chunk (rolled back) at once; its lease will expire. The gate
    never lets the chunk finish: only leaving it ends the worker."""
    log_path = tmp_path / "run.log"
    run, port = start_manage_run(media_root=media_root, log_path=log_path, **gated(held))
    processes = tree(run.pid, 3)
    op_id = importing(start_upload, held)

    os.killpg(run.pid, signal.SIGINT)
    wait_for(lambda: STOPPING in log_path.read_text(errors="replace"), what="the worker to hear the first")
    time.sleep(1.5)  # past the burst in which `manage.py run` takes signals as one request
    os.killpg(run.pid, signal.SIGINT)

    assert_all_gone(processes, port, run)
    op = Operation.objects.get(pk=op_id)
    assert op.state == Operation.State.RUNNING and op.lines_finished == 500  # its lease will expire


def test_a_child_that_ends_by_itself_ends_the_run(media_root, tmp_path):
    """The port is taken: runserver fails, and `manage.py run` stops its worker and fails."""
    port = free_port()
    with socket.create_server(("127.0.0.1", port)):
        run = subprocess.run(
            [sys.executable, "manage.py", "run", "--port", str(port)],
            cwd=ROOT,
            env={**os.environ, "DATABASE_URL": database_url(), "LONG_TASK_MEDIA_ROOT": str(media_root)},
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert run.returncode == 1, run.stderr
    assert "runserver ended by itself" in run.stderr


def test_procfile_processes_stop_whole_on_one_sigterm(media_root, tmp_path, tree):
    """Each line of the Procfile, run by a shell as honcho or a platform runs it, is the process
    itself (`exec`), and one SIGTERM to it, as from systemd (KillMode=mixed) or `docker stop`,
    ends it and everything it started."""
    assert set(procfile()) == {"web", "worker"}
    port = free_port()
    env = procfile_environment(port=port, media_root=media_root)
    log_path = tmp_path / "procfile.log"
    with open(log_path, "wb") as log:
        web, worker = (
            subprocess.Popen(["sh", "-c", procfile()[name]], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
            for name in ("web", "worker")
        )
    wait_for(lambda: port_open(port), timeout=30, what="gunicorn")
    wait_for(lambda: ": started" in log_path.read_text(errors="replace"), timeout=30, what="the worker")
    wait_for(lambda: len(psutil.Process(web.pid).children()) == 2, what="gunicorn's 2 workers")
    web_processes, worker_processes = tree(web.pid, 3), tree(worker.pid, 1)
    assert "gunicorn" in " ".join(web_processes[0].cmdline())
    assert "process_tasks" in worker_processes[0].cmdline()

    web.send_signal(signal.SIGTERM)
    worker.send_signal(signal.SIGTERM)

    assert_all_gone(web_processes, port, web)
    assert_all_gone(worker_processes, port, worker)
    assert worker.returncode == 0


def test_procfile_web_workers_end_when_gunicorns_master_is_killed(media_root, tmp_path, tree):
    """A SIGKILL of gunicorn's master alone (the OOM killer, a `kill -9` of its pid) leaves its
    workers to init: each notices that its parent has changed and stops, within a bound."""
    port = free_port()
    env = procfile_environment(port=port, media_root=media_root)
    with open(tmp_path / "web.log", "wb") as log:
        web = subprocess.Popen(["sh", "-c", procfile()["web"]], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    wait_for(lambda: port_open(port), timeout=30, what="gunicorn")
    wait_for(lambda: len(psutil.Process(web.pid).children()) == 2, what="gunicorn's 2 workers")
    master, *workers = tree(web.pid, 3)
    assert "gunicorn" in " ".join(master.cmdline())

    master.send_signal(signal.SIGKILL)
    web.wait(timeout=10)

    deadline = time.monotonic() + ORPHANS_GONE_SECONDS
    while running(workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    survivors = [f"{p.pid} {' '.join(p.cmdline()[1:4])}" for p in running(workers)]
    assert not survivors, f"outlived their master: {survivors}"
    assert not port_open(port), "the port is still taken"
