"""One user's long polls against another user's requests, on the production server of the Procfile.

    .venv/bin/python bench/long_polls.py [--polls 16] [--seconds 12] [--idle-seconds 5] [--database-url URL]

Starts the web line of the Procfile as it is written (`exec gunicorn ...`, the virtualenv's bin
first on PATH, DJANGO_DEBUG=0 with a secret key), on a free loopback port, with a fresh SQLite
database or `--database-url` (migrated; its users and their operations are reused on a rerun);
user A keeps `--polls` long polls (`wait_for_change=10`, its current ETag) open on its operation,
unchanged. First nothing else happens for `--idle-seconds`: the CPU time the web's processes
(gunicorn's and its workers') spend then is what the waiting polls cost it. Then user B lists
its operations one request after another. Prints that CPU time and B's latencies (p50, p99,
max) with the Procfile's server ("after") and with the previous one, gunicorn's threads over
WSGI ("before"). The per-user bound on long polls is raised to `--polls` for both, so that what
is measured is how the server serves them (tests/api/test_wait_limits.py checks the bound).
"""

import argparse
import http.client
import json
import os
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from testbed.machine import free_port, port_open, wait_for  # noqa: E402

BIN = Path(sys.executable).parent
# The Procfile's web line before the web became ASGI: gunicorn's threads over WSGI.
BEFORE = "exec gunicorn long_task.wsgi --bind 0.0.0.0:${PORT:-8000} --workers 2 --threads 8 --timeout 600"
SETUP = """
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from operations.models import Operation
tokens = []
for name in ("poller", "other"):
    user = get_user_model().objects.get_or_create(username=name)[0]
    tokens.append(Token.objects.get_or_create(user=user)[0].key)
    if not Operation.objects.filter(owner=user).exists():
        Operation.objects.create(owner=user, op_type="Upload")
print(" ".join(tokens))
"""


def procfile_web_line() -> str:
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith("web:"):
            return line.removeprefix("web:").strip()
    raise LookupError("no web line in the Procfile")


@dataclass
class Server:
    port: int
    tokens: dict[str, str]
    process: subprocess.Popen
    log: Path

    def request(self, user: str, path: str, *, etag: str | None = None, timeout: float = 30.0):
        """(status, headers, body) of a GET as `user`."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        headers = {"Authorization": f"Token {self.tokens[user]}"}
        if etag:
            headers["If-None-Match"] = etag
        try:
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
            return response.status, response.headers, response.read()
        finally:
            connection.close()


def server_environment(directory: Path, database_url: str | None, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "DJANGO_SETTINGS_MODULE": "long_task.settings",
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "bench-long-polls-not-secret",
        "DJANGO_SECURE_SSL_REDIRECT": "0",
        "DJANGO_SECURE_COOKIES": "0",
        "DATABASE_URL": database_url or f"sqlite:///{directory / 'db.sqlite3'}",
        "LONG_TASK_MEDIA_ROOT": str(directory / "media"),
        "PYTHONPATH": str(ROOT),
        **extra,
    }
    env.pop("DJANGO_ALLOWED_HOSTS", None)
    return env


@contextmanager
def production_server(line: str, *, database_url: str | None = None, **extra: str):
    """The Procfile line `line` serving a fresh database (SQLite in a temporary directory unless
    `database_url`, whose tables it creates), with users "poller" and "other", one operation each."""
    with tempfile.TemporaryDirectory(prefix="long-polls-") as name:
        directory = Path(name)
        env = server_environment(directory, database_url, **extra)
        manage = [sys.executable, str(ROOT / "manage.py")]
        subprocess.run([*manage, "migrate", "--noinput"], env=env, check=True, capture_output=True)
        if env.get("LONG_TASK_CACHE_URL") == "db":
            subprocess.run([*manage, "createcachetable"], env=env, check=True, capture_output=True)
        tokens = subprocess.run([*manage, "shell", "-c", SETUP], env=env, check=True, capture_output=True, text=True)
        port = free_port()
        command = line.replace("0.0.0.0:", "127.0.0.1:")
        log = directory / "web.log"
        with open(log, "wb") as output:
            process = subprocess.Popen(
                ["bash", "-c", command], env={**env, "PORT": str(port)}, stdout=output, stderr=subprocess.STDOUT
            )
        try:
            wait_for(lambda: port_open(port) or process.poll() is not None, timeout=60, what="the web server")
            if process.poll() is not None:
                raise RuntimeError(f"the web server stopped:\n{log.read_text()}")
            poller, other = tokens.stdout.splitlines()[-1].split()
            yield Server(port, {"poller": poller, "other": other}, process, log)
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@dataclass
class LongPolls:
    """`count` long polls of one user, each asked again as soon as it answers, until `stop`."""

    server: Server
    count: int
    path: str
    answers: list[tuple[int, float]] = field(default_factory=list)  # (status, seconds)
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _poll(self, etag: str) -> None:
        while not self.stop.is_set():
            with self.lock:
                self.in_flight += 1
            started = time.monotonic()
            try:
                status, _, _ = self.server.request("poller", f"{self.path}?wait_for_change=10", etag=etag, timeout=60)
            finally:
                with self.lock:
                    self.in_flight -= 1
            self.answers.append((status, time.monotonic() - started))

    def __enter__(self):
        status, headers, body = self.server.request("poller", self.path)
        assert status == 200, (status, body)
        for _ in range(self.count):
            thread = threading.Thread(target=self._poll, args=(headers["ETag"],), daemon=True)
            thread.start()
            self.threads.append(thread)
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()


def first_operation(server: Server, user: str) -> int:
    _, _, body = server.request(user, "/api/operations/")
    return json.loads(body)["results"][0]["op_id"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def other_user_latencies(server: Server, *, seconds: float) -> list[float]:
    """The other user's list requests, one after another for `seconds`, in seconds each."""
    latencies, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.monotonic()
        status, _, _ = server.request("other", "/api/operations/")
        latencies.append(time.monotonic() - started)
        assert status == 200, status
    return latencies


def cpu_seconds(pid: int) -> float:
    """The CPU time (user and system) so far of process `pid` and of its children (Linux)."""
    ticks, total = os.sysconf("SC_CLK_TCK"), 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after the command's name
        except OSError:  # ended meanwhile
            continue
        if stat.parent.name == str(pid) or fields[1] == str(pid):  # the process, or its parent
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


@dataclass
class Measured:
    latencies: list[float]  # the other user's requests, seconds each
    idle_cpu: float  # CPU seconds of the web's processes while only the long polls waited
    idle_seconds: float


def measure(line: str, *, polls: int, seconds: float, idle_seconds: float, database_url: str | None) -> Measured:
    with production_server(line, database_url=database_url, LONG_TASK_MAX_WAITS_PER_USER=str(polls)) as server:
        op_id = first_operation(server, "poller")
        other_user_latencies(server, seconds=1.0)  # warm both workers up
        with LongPolls(server, polls, f"/api/operations/{op_id}/") as long_polls:
            wait_for(lambda: long_polls.in_flight == polls, timeout=10, what="the long polls")
            time.sleep(1.0)  # the polls reach the server (in flight on the client's side first)
            cpu = cpu_seconds(server.process.pid)
            time.sleep(idle_seconds)  # only the long polls, waiting
            idle_cpu = cpu_seconds(server.process.pid) - cpu
            return Measured(other_user_latencies(server, seconds=seconds), idle_cpu, idle_seconds)


def describe(measured: Measured) -> str:
    ms = [value * 1000 for value in measured.latencies]
    return (
        f"{len(ms)} requests, p50 {percentile(ms, 0.5):,.1f} ms, p99 {percentile(ms, 0.99):,.1f} ms, "
        f"max {max(ms):,.1f} ms; web CPU {measured.idle_cpu:.2f} s in {measured.idle_seconds:g} s of waiting"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--polls", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=12.0, help="of the other user's requests")
    parser.add_argument("--idle-seconds", type=float, default=5.0, help="of the long polls alone (the CPU time)")
    parser.add_argument("--database-url", default=None, help="a database to create the tables in (default: SQLite)")
    parser.add_argument("--after-only", action="store_true", help="only the Procfile's server")
    args = parser.parse_args()
    runs = [("after (Procfile)", procfile_web_line())]
    if not args.after_only:
        runs.insert(0, ("before (WSGI threads)", BEFORE))
    print(f"{args.polls} long polls of one user held; the other user's GET /api/operations/:")
    for name, line in runs:
        measured = measure(
            line, polls=args.polls, seconds=args.seconds, idle_seconds=args.idle_seconds, database_url=args.database_url
        )
        print(f"  {name:<22} {describe(measured)}")
        print(f"  {'':<22} {shlex.join(shlex.split(line))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
