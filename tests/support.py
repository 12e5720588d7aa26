"""Test support shared by the test suite and `make chaos`: CSV data, polling, real
`process_tasks` workers against the database in use, and the overlap check of I5."""

import contextlib
import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

from django.db import connection
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from operations.models import Operation, UploadedRow
from testbed.machine import free_port, port_open, wait_for  # noqa: F401 (shared with the tests)
from tests.gate import Gate

ROOT = Path(__file__).resolve().parent.parent
HEADER = ["name", "phone", "email", "city"]


# --- data -----------------------------------------------------------------------------------


def csv_bytes(rows: int, *, header: list[str] = HEADER, start: int = 1, bom: bool = False) -> bytes:
    """A CSV file of `rows` well-formed data rows; row n's name is 'name<n>'."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for n in range(start, start + rows):
        writer.writerow([f"name{n}", f"+1555{n:07d}", f"user{n}@example.com", f"City {n % 97}"][: len(header)])
    data = out.getvalue().encode()
    return (b"\xef\xbb\xbf" + data) if bom else data


def upload_file(content: bytes, name: str = "data.csv"):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, content, content_type="text/csv")


def stored_lines(op_id: int) -> list[int]:
    return list(
        UploadedRow.objects.filter(operation_id=op_id).order_by("line_number").values_list("line_number", flat=True)
    )


def overlapping_chunks(records: list[dict]) -> list[tuple[dict, dict]]:
    """Pairs of committed chunks of one operation, by different workers, whose processing
    (from the start of the write to the commit) overlapped in time: two workers at once."""
    pairs = []
    by_op: dict[int, list[dict]] = {}
    for record in records:
        by_op.setdefault(record["op"], []).append(record)
    for chunks in by_op.values():
        chunks.sort(key=lambda record: record["start"])
        for i, first in enumerate(chunks):
            for second in chunks[i + 1 :]:
                if second["start"] >= first["end"]:
                    break
                if second["worker"] != first["worker"]:
                    pairs.append((first, second))
    return pairs


TEST_WORKER = "test-worker"


def operation_in_state(state: str, *, op_id: int | None = None, expired: bool = False, **fields) -> Operation:
    """An operation put straight into `state` (a new one, or `op_id`), bypassing the state
    machine. A worked state gets a lease by TEST_WORKER (unless `lease_owner` is given), live
    for a minute or, with `expired`, run out five seconds ago; other states get none."""
    if state in Operation.State.worked():
        fields.setdefault("lease_owner", TEST_WORKER)
    if fields.get("lease_owner"):
        fields.setdefault("lease_expires_at", timezone.now() + timedelta(seconds=-5 if expired else 60))
    else:
        fields.update(lease_owner="", lease_expires_at=None)
    if op_id is None:
        return Operation.objects.create(state=state, **fields)
    Operation.objects.filter(pk=op_id).update(state=state, **fields)
    return Operation.objects.get(pk=op_id)


def op_in_state(op_id: int, *states: str) -> Operation | None:
    op = Operation.objects.get(pk=op_id)
    return op if op.state in states else None


# --- settings and clients -------------------------------------------------------------------


def token_client(user) -> APIClient:
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


# --- real workers ---------------------------------------------------------------------------


def database_url() -> str:
    """The URL of the database this test run uses, for the worker subprocesses."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def other_session(*, dbname: str | None = None):
    """A PostgreSQL connection of its own (autocommit) to this test run's database, or to
    `dbname`: to act on Django's connection from outside, as another client would."""
    import psycopg

    db = connection.settings_dict
    return psycopg.connect(
        host=db["HOST"] or "127.0.0.1",
        port=db["PORT"] or 5432,
        user=db["USER"],
        password=db.get("PASSWORD") or None,
        dbname=dbname or db["NAME"],
        autocommit=True,
    )


def procfile() -> dict[str, str]:
    """The Procfile's lines by process name (`web`, `worker`)."""
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line and not line.startswith("#"))


def procfile_environment(*, port: int, media_root: Path, **env: str) -> dict[str, str]:
    """The environment a platform gives a Procfile line, here: the virtualenv first on PATH, the
    port, the test database and media directory, and `env`."""
    return {
        **os.environ,
        "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}",
        "PORT": str(port),
        "DATABASE_URL": database_url(),
        "LONG_TASK_MEDIA_ROOT": str(media_root),
        **env,
    }


def exact_chunks(rows: int) -> dict[str, str]:
    """Worker settings for chunks of exactly `rows` rows: the first chunk has them, the next are
    sized by time up to LONG_TASK_CHUNK_ROWS, and a minute's target is never reached."""
    return {
        "LONG_TASK_CHUNK_ROWS": str(rows),
        "LONG_TASK_FIRST_CHUNK_ROWS": str(rows),
        "LONG_TASK_CHUNK_SECONDS": "60",
        "LONG_TASK_CANCELLABLE_CHUNK_SECONDS": "60",
    }


class Workers:
    """Starts `manage.py process_tasks` subprocesses and cleans them up."""

    def __init__(self, *, media_root: Path, log_dir: Path):
        self.media_root = media_root
        self.log_dir = log_dir
        self.chunk_log_dir = log_dir / "chunks"
        self.processes: list[subprocess.Popen] = []

    def start(
        self,
        *,
        gate: Gate | None = None,
        chunk_delay: float = 0.0,
        lease_seconds: float = 3.0,
        own_group: bool = False,
        cwd: Path = ROOT,
        **env,
    ) -> subprocess.Popen:
        """A worker; `gate` holds it at the gate's points (tests/gate.py); `chunk_delay` makes
        each chunk hold its transaction longer (load, never a wait for mid-import); `own_group`
        puts it in a process group of its own, as a shell's job is; `cwd` is where it runs
        (another "machine", with its own LONG_TASK_MEDIA_ROOT in `env`)."""
        self.chunk_log_dir.mkdir(exist_ok=True)
        environment = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.worker_settings",
            "DATABASE_URL": database_url(),
            "LONG_TASK_MEDIA_ROOT": str(self.media_root),
            "LONG_TASK_LEASE_SECONDS": str(lease_seconds),
            "LONG_TASK_RECOVERY_SECONDS": "0.5",
            "LONG_TASK_TEST_CHUNK_DELAY": str(chunk_delay),
            "LONG_TASK_TEST_CHUNK_LOG": str(self.chunk_log_dir),
            "PYTHONUNBUFFERED": "1",
            **(gate.env() if gate else {}),
            **{key: str(value) for key, value in env.items()},
        }
        log = open(self.log_dir / f"worker-{len(self.processes)}.log", "wb")  # noqa: SIM115
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "process_tasks", "--sleep", "0.05"],
            cwd=cwd,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            process_group=0 if own_group else None,
        )
        process.log_path = log.name
        self.processes.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
        for process in self.processes:
            process.wait(timeout=10)

    def worker_id(self, process: subprocess.Popen) -> str:
        """The opaque id a worker process uses in leases and events (its log names its PID)."""
        pattern = re.compile(rf"worker (\w+) is process {process.pid} ")
        found = wait_for(lambda: pattern.search(Path(process.log_path).read_text(errors="replace")), what="its id")
        return found.group(1)

    def chunk_records(self) -> list[dict]:
        """Every committed chunk, as recorded by tests/worker_hooks."""
        return [json.loads(line) for path in self.chunk_log_dir.glob("*.jsonl") for line in path.open()]

    def logs(self) -> str:
        return "\n".join(Path(p.log_path).read_text(errors="replace")[-3000:] for p in self.processes)


# --- a real web server ------------------------------------------------------------------------


@contextlib.contextmanager
def running_server(
    *, media_root: Path, log_path: Path, cwd: Path = ROOT, **env: str
) -> Iterator[tuple[subprocess.Popen, int]]:
    """`manage.py runserver` on the test database, as (process, port), killed afterwards;
    run in `cwd` with `env` on top of ours."""
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url(), "LONG_TASK_MEDIA_ROOT": str(media_root), **env}
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "runserver", "--noreload", f"127.0.0.1:{port}"],
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for(lambda: port_open(port), timeout=30, what="the web server")
            yield server, port
        finally:
            server.kill()
            server.wait()


def start_manage_run(
    *, media_root: Path, log_path: Path, cwd: Path = ROOT, preexec_fn=None, **env: str
) -> tuple[subprocess.Popen, int]:
    """`manage.py run` (what `make run` starts) on the test database, in a process group of its
    own as in a terminal; returns (process, port) once its server answers and its worker runs."""
    port = free_port()
    command = [sys.executable, "manage.py", "run", "--port", str(port)]
    run = start_in_session(
        command, port, media_root=media_root, log_path=log_path, cwd=cwd, preexec_fn=preexec_fn, **env
    )
    return run, port


def start_make_run(*, media_root: Path, log_path: Path, **env: str) -> tuple[subprocess.Popen, int]:
    """`make -s run` itself (make, then `manage.py run` and its children), like
    start_manage_run: GNU make passes a SIGTERM on to its child, which also gets its group's."""
    port = free_port()
    # Not the make flags of a `make test` that may have started us.
    env = {"MAKEFLAGS": "", "MFLAGS": "", "MAKELEVEL": "", **env}
    make = start_in_session(
        ["make", "-s", "run", f"PORT={port}"], port, media_root=media_root, log_path=log_path, **env
    )
    return make, port


def start_in_session(
    command: list[str], port: int, *, media_root: Path, log_path: Path, cwd: Path = ROOT, preexec_fn=None, **env: str
) -> subprocess.Popen:
    """`command` (a `run` serving on `port`) on the test database, in a session of its own as
    in a terminal; returns once its server answers and its worker runs."""
    environment = {**os.environ, "DATABASE_URL": database_url(), "LONG_TASK_MEDIA_ROOT": str(media_root), **env}

    def as_in_a_terminal() -> None:
        # A job of a terminal hangs up with it, even when the test run itself was started under
        # nohup (whose ignored SIGHUP `run` would rightly keep ignoring).
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        if preexec_fn is not None:
            preexec_fn()

    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=as_in_a_terminal,
        )
    wait_for(lambda: port_open(port), timeout=30, what=f"the server of {' '.join(command)}")
    wait_for(lambda: ": started" in log_path.read_text(errors="replace"), timeout=30, what="its worker")
    return process


def wait_stopped(run: subprocess.Popen, port: int) -> int:
    """The exit code of `manage.py run`, which must stop within 20 s and take its server along."""
    try:
        code = run.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(run.pid, signal.SIGKILL)
        raise
    assert not port_open(port), "the server outlived manage.py run"
    return code
