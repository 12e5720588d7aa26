"""The bench's harness: processes and servers, CPU accounting, ABBA alternation, statistics and
the printed table. The targets (bench/targets.py) are small functions written with it.

What it measures, and why:

- Wall clock (rows/s) moves with the neighbours on a shared 2-core machine: by a third from one
  minute to the next. CPU seconds per 1,000 rows of each process doing the work (the worker and
  its database backend; the baseline's own process and its backend) hardly move, so a
  comparison passes on the CPU ratio and shows the wall ratio beside it.
- Ours and the baseline alternate ABBA ABBA..., and each ratio is taken within an adjacent
  pair (A with the B next to it), so a slow minute weighs on both sides of one ratio.
- A baseline runs in a process of its own, at the worker's niceness and in the bench's
  session, like the worker: the two sides differ only in the code that does the work.
- While a side is measured the bench reads the database once per POLL_SECONDS, no more often
  than a web client would poll; it never runs during one side only.
- `--cpu-hog` runs a bounded busy loop at nice 0 on one core, in a session of its own (the
  way a neighbour's test suite runs), during every measured side: a slow machine on purpose.
"""

import contextlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from testbed.machine import free_port, peak_rss_kib, port_open, recreate_postgres_database, wait_for  # noqa: E402

PYTHON = sys.executable
BENCH_SCRIPT = Path(__file__).resolve().parent / "bench.py"
MiB = 1024 * 1024
WORKER_POLL_SECONDS = 0.05  # process_tasks --sleep: how soon an idle worker sees a new task
WEB_APP_NAME = "bench-web"  # the application_name of the web's connections (their backends' CPU)
PROCFILE_GUNICORN_ARGS = (
    "--worker-class long_task.gunicorn_worker.SupervisedUvicornWorker --workers 2"  # as the Procfile runs it
)
POLL_SECONDS = 0.5  # how often the bench reads a state it waits for while a side is measured
HOG_SECONDS = 900  # a CPU hog ends by itself after this, whatever happens to the bench


# --- statistics -------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def median(values: list[float]) -> float:
    return percentile(values, 0.5)


def spread(values: list[float], fmt: str = "{:,.0f}") -> str:
    """'median (min-max)', or the one value."""
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"


# --- CPU accounting ---------------------------------------------------------------------------


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a live process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of the whole machine so far."""
    values = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def machine_busy_since(start: tuple[int, int]) -> float:
    busy, total = machine_ticks()
    return (busy - start[0]) / max(1, total - start[1])


def wait_idle(pid: int, *, timeout: float = 120.0) -> None:
    """Wait until process `pid` has used under 5% of a core for 0.2 s (its start-up is over)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = process_cpu(pid)
        time.sleep(0.2)
        if process_cpu(pid) - before < 0.01:
            return
    raise AssertionError(f"process {pid} still busy after {timeout} s")


class CpuMeter:
    """CPU seconds used by named processes between `start()` and `stop()`."""

    def __init__(self, pids: dict[str, int]):
        self.pids = pids
        self.before = {name: process_cpu(pid) for name, pid in pids.items()}

    def stop(self) -> dict[str, float]:
        return {name: process_cpu(pid) - self.before[name] for name, pid in self.pids.items()}


@dataclass
class Measurement:
    """One side's run: `units` (rows) done in `seconds` of wall clock, with the CPU seconds of
    each process that did the work ({"worker": ..., "backend": ...})."""

    units: int
    seconds: float
    cpu: dict[str, float] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)  # what a side counted besides (rows it rejected, say)

    @property
    def rate(self) -> float:
        return self.units / self.seconds

    @property
    def cpu_ms_per_1k(self) -> float:
        """CPU milliseconds per 1,000 units, all processes together (= CPU s per 1,000,000)."""
        return sum(self.cpu.values()) * 1e6 / self.units

    def part_ms_per_1k(self, name: str) -> float:
        return self.cpu[name] * 1e6 / self.units


def describe(measurements: list[Measurement], unit: str = "rows/s") -> str:
    rates = [m.rate for m in measurements]
    text = f"{spread(rates)} {unit}"
    if measurements[0].cpu:
        names = list(measurements[0].cpu)
        parts = " + ".join(f"{name} {median([m.part_ms_per_1k(name) for m in measurements]):.2f}" for name in names)
        total = spread([m.cpu_ms_per_1k for m in measurements], "{:.2f}")
        text += f"; CPU ms/1k rows {total} = {parts}"
    return text


def paired_ratios(ours: list[Measurement], base: list[Measurement]) -> tuple[list[float], list[float]]:
    """Per adjacent pair: (CPU ratio = base CPU per row / ours, wall ratio = ours rate / base)."""
    pairs = list(zip(ours, base, strict=True))
    cpu = [b.cpu_ms_per_1k / o.cpu_ms_per_1k for o, b in pairs if o.cpu and b.cpu and o.cpu_ms_per_1k > 0]
    wall = [o.rate / b.rate for o, b in pairs]
    return cpu, wall


# --- the printed table ------------------------------------------------------------------------


@dataclass
class Row:
    target: str
    ours: str
    baseline: str = ""
    cpu_ratio: str = ""
    wall_ratio: str = ""
    goal: str = ""
    passed: bool | None = None  # None: informative, no goal here


def table(rows: list[Row]) -> str:
    columns = ["target", "ours", "baseline (same run)", "CPU ratio", "wall ratio", "goal", "result"]
    cells = [columns] + [
        [
            row.target,
            row.ours,
            row.baseline,
            row.cpu_ratio,
            row.wall_ratio,
            row.goal,
            "n/a" if row.passed is None else ("PASS" if row.passed else "FAIL"),
        ]
        for row in rows
    ]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = [
        "| " + " | ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)) + " |" for line in cells
    ]
    lines.insert(1, "|" + "|".join("-" * (width + 2) for width in widths) + "|")
    return "\n".join(lines)


# --- HTTP -------------------------------------------------------------------------------------


class Client:
    """A keep-alive HTTP client for the API (one per thread or process)."""

    def __init__(self, port: int, token: str):
        self.port, self.token = port, token
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def call(self, verb: str, **body) -> tuple[int, dict, float]:
        data = json.dumps(body).encode()
        headers = {"Authorization": f"Token {self.token}", "Content-Type": "application/json"}
        started = time.perf_counter()
        try:
            self.conn.request("POST", f"/{verb}/", data, headers)
            response = self.conn.getresponse()
        except (http.client.HTTPException, OSError):
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
            self.conn.request("POST", f"/{verb}/", data, headers)
            response = self.conn.getresponse()
        payload = json.loads(response.read() or b"{}")
        return response.status, payload, time.perf_counter() - started

    def upload(self, op_id: int, path: Path) -> float:
        """Stream a multipart upload of `path` from disk; return the seconds it took."""
        boundary = "bench-boundary-7d3f"
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="op_id"\r\n\r\n{op_id}\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{path.name}"\r\n'
            "Content-Type: text/csv\r\n\r\n"
        ).encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        started = time.perf_counter()
        conn.putrequest("POST", "/upload/")
        conn.putheader("Authorization", f"Token {self.token}")
        conn.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
        conn.putheader("Content-Length", str(len(head) + path.stat().st_size + len(tail)))
        conn.endheaders()
        conn.send(head)
        with open(path, "rb") as source:
            while block := source.read(MiB):
                conn.send(block)
        conn.send(tail)
        response = conn.getresponse()
        body = response.read()
        elapsed = time.perf_counter() - started
        conn.close()
        if response.status != 202:
            raise RuntimeError(f"upload answered {response.status}: {body[:200]!r}")
        return elapsed


# --- the CPU hog ------------------------------------------------------------------------------

HOG_CODE = """
import os, sys, time
os.sched_setaffinity(0, {int(sys.argv[1])})
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    pass
"""


class CpuHog:
    """`--cpu-hog`: a busy loop at nice 0 pinned to one core while a side is measured. It runs in
    a session of its own, as a neighbour's test suite does: with the kernel's autogroups (on
    here), niceness only ranks processes within one session."""

    def __init__(self, enabled: bool, core: int = 0):
        self.enabled, self.core = enabled, core

    @contextmanager
    def running(self) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        hog = subprocess.Popen(
            [PYTHON, "-c", HOG_CODE, str(self.core), str(HOG_SECONDS)],
            start_new_session=True,
            preexec_fn=lambda: os.setpriority(os.PRIO_PROCESS, 0, 0),
        )
        try:
            yield
        finally:
            hog.kill()
            hog.wait()


# --- the harness ------------------------------------------------------------------------------


def write_csv(path: Path, rows: int) -> Path:
    """name,phone,email,city: about 75 bytes a row."""
    import csv

    cities = ["Amsterdam", "Berlin", "Chicago", "Delhi", "Edinburgh", "Fukuoka", "Geneva", "Houston"]
    with open(path, "w", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["name", "phone", "email", "city"])
        for n in range(1, rows + 1):
            writer.writerow([f"Person Number{n}", f"+1-555-{n:07d}", f"person.number{n}@example.com", cities[n % 8]])
    return path


class Harness:
    """A fresh database, a real gunicorn, real `process_tasks` workers, the API user, the data
    files; and the means to measure a side (`measure_worker`, `run_baseline`), to alternate
    sides (`compare`) and to report (`add`, `report`)."""

    def __init__(self, args):
        self.args = args
        self.workdir = Path(tempfile.mkdtemp(prefix="long-task-bench-"))
        self.rows: list[Row] = []
        self.processes: list[subprocess.Popen] = []
        self.figures: dict[str, float] = {}
        self.hog = CpuHog(args.cpu_hog)
        self._workers = 0

    # set-up and tear-down

    def setup(self) -> None:
        url = os.environ.get("DATABASE_URL", "")
        self.env = {
            **os.environ,
            "DATABASE_URL": self._fresh_database(url),
            "DJANGO_SETTINGS_MODULE": "long_task.settings",
            "DJANGO_DEBUG": "0",
            "DJANGO_SECRET_KEY": "bench-only-secret-key-" + "x" * 40,
            "DJANGO_SECURE_SSL_REDIRECT": "0",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "LONG_TASK_MEDIA_ROOT": str(self.workdir / "media"),
            "LONG_TASK_LOG_LEVEL": "WARNING",
            # Target 13's uploads (tens of GB at full size) count until a worker has finished
            # terminating them, and no worker runs while they are timed.
            "LONG_TASK_QUOTA_STORED_BYTES": str(10**15),
        }
        os.environ.update(self.env)
        import django

        django.setup()
        from django.conf import settings
        from django.contrib.auth import get_user_model
        from django.core.management import call_command
        from django.db import connection
        from rest_framework.authtoken.models import Token

        call_command("migrate", verbosity=0)
        user = get_user_model().objects.create_user("bench")
        self.token = Token.objects.create(user=user).key
        self.vendor = connection.vendor
        self.worker_nice = settings.LONG_TASK_WORKER_NICE
        print(
            f"long_task bench on {self.vendor}: {self.args.rows:,} rows, {os.cpu_count()} cores, "
            f"{self.args.repeats} repeats{', CPU hog on core 0' if self.args.cpu_hog else ''}, {self.workdir}",
            flush=True,
        )
        self.big = write_csv(self.workdir / "big.csv", self.args.rows)
        self.small = write_csv(self.workdir / "small.csv", self.args.small_rows)
        self.server, self.client = self.start_web()
        self.port = self.client.port

    def start_web(self, name: str = "web", env: dict | None = None) -> tuple[subprocess.Popen, "Client"]:
        """A gunicorn as in production, and a client of it."""
        port = free_port()
        server = self.spawn(
            [
                str(Path(PYTHON).parent / "gunicorn"),
                # The Procfile's server; BENCH_WEB_APP=long_task.wsgi with BENCH_GUNICORN_ARGS="--workers
                # 2 --threads 8" measures the threaded WSGI server instead.
                os.environ.get("BENCH_WEB_APP", "long_task.asgi"),
                "-b",
                f"127.0.0.1:{port}",
                *os.environ.get("BENCH_GUNICORN_ARGS", PROCFILE_GUNICORN_ARGS).split(),
                "--timeout",
                "600",
                # BENCH_ACCESS_LOG=1: each request's server-side milliseconds in the web log.
                *(
                    ["--access-logfile", "-", "--access-logformat", "%(M)s %(U)s"]
                    if os.environ.get("BENCH_ACCESS_LOG")
                    else []
                ),
            ],
            name,
            {"PGAPPNAME": WEB_APP_NAME, **(env or {})},
        )
        wait_for(lambda: port_open(port), what=f"the web server {name}")
        return server, Client(port, self.token)

    def _fresh_database(self, url: str) -> str:
        if not url:
            return f"sqlite:///{self.workdir / 'bench.sqlite3'}"
        return recreate_postgres_database(url, suffix="_bench")

    def spawn(self, command: list[str], name: str, env: dict | None = None) -> subprocess.Popen:
        log = open(self.workdir / f"{name}-{len(self.processes)}.log", "wb")  # noqa: SIM115
        # A group of its own, killed whole at teardown: nothing it started outlives the bench,
        # even a web worker in the second it takes to notice that its master was killed.
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**self.env, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes.append(process)
        return process

    def start_worker(self, env: dict | None = None) -> subprocess.Popen:
        """A `process_tasks` worker whose database backend can be found by its application_name;
        `env`: more of its environment (another file store, say)."""
        self._workers += 1
        name = f"bench-worker-{self._workers}"
        # Its connection, and so the backend whose CPU is counted, lives for the whole bench: by
        # default an idle worker makes a new one every 60 s, which could fall within a measurement.
        env = {**(env or {}), "PGAPPNAME": name, "DATABASE_CONN_MAX_AGE": "3600"}
        worker = self.spawn([PYTHON, "manage.py", "process_tasks", "--sleep", str(WORKER_POLL_SECONDS)], name, env)
        worker.app_name = name
        wait_idle(worker.pid)  # its start-up is no part of what is measured
        if self.vendor == "postgresql":
            # A loaded machine can pause its start-up long enough to look idle before it connects.
            wait_for(lambda: self.backend_pids(name), what=f"the database connection of {name}")
            wait_idle(worker.pid)
        return worker

    def only(self, worker: subprocess.Popen | None) -> None:
        """Let `worker` alone take operations (None: no worker): every other live worker is
        stopped (SIGSTOP, so that it keeps its peak RSS), `worker` continued."""
        for process in self.live_workers():
            process.send_signal(signal.SIGCONT if process is worker else signal.SIGSTOP)

    def continue_workers(self) -> None:
        """Undo `only`: every live worker takes operations again."""
        for process in self.live_workers():
            process.send_signal(signal.SIGCONT)

    def live_workers(self) -> list[subprocess.Popen]:
        return [process for process in self.processes if hasattr(process, "app_name") and process.poll() is None]

    def stop(self, process: subprocess.Popen) -> None:
        process.send_signal(signal.SIGCONT)  # if it was stopped (`only`)
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()

    def teardown(self) -> None:
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        # The data (150 MB at FULL size) goes; the processes' logs stay for a look.
        for path in self.workdir.iterdir():
            if path.suffix != ".log":
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)

    # operations

    def op(self, op_id: int):
        from operations.models import Operation

        return Operation.objects.get(pk=op_id)

    def register(self) -> int:
        status, body, _ = self.client.call("register")
        assert status == 201, body
        return body["op_id"]

    def started(self, path: Path, client: "Client | None" = None, **options) -> tuple[int, float]:
        """Register an operation (with `options`: `target="contacts"`, say) and upload `path`
        (through `client`'s web server, by default the bench's): (op_id, upload seconds)."""
        client = client or self.client
        status, body, _ = client.call("register", **options)
        assert status == 201, body
        return body["op_id"], client.upload(body["op_id"], path)

    def wait_state(self, op_id: int, *states: str, timeout: float = 900, interval: float = POLL_SECONDS):
        def reached():
            op = self.op(op_id)
            return op if op.state in states else None

        return wait_for(reached, timeout=timeout, interval=interval, what=f"operation {op_id} {states}")

    def event_seconds(self, op_id: int, start: dict, end: dict) -> float:
        """Seconds between the first event matching `start` and the last matching `end`."""
        events = self.op(op_id).events
        began = events.filter(**start).order_by("id").first().at
        ended = events.filter(**end).order_by("id").last().at
        return (ended - began).total_seconds()

    def scratch_operation(self):
        from rest_framework.authtoken.models import Token

        from operations.models import Operation

        return Operation.objects.create(owner=Token.objects.get(key=self.token).user, state="paused")

    def vacuum(self) -> None:
        """PostgreSQL: reclaim dead rows now, outside any timing, rather than have autovacuum do
        it during the next measurement."""
        from django.db import connection

        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("VACUUM operations_uploadedrow")

    # measuring a side

    def backend_pids(self, app_name: str) -> list[int]:
        """The PostgreSQL backends of the connections named `app_name` ([] on SQLite)."""
        if self.vendor != "postgresql":
            return []
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND datname = current_database()",
                [app_name],
            )
            return [pid for (pid,) in cursor.fetchall()]

    def backend_pid(self, app_name: str) -> int | None:
        """The PostgreSQL backend of the connection named `app_name` (None on SQLite)."""
        if self.vendor != "postgresql":
            return None
        pids = self.backend_pids(app_name)
        assert len(pids) == 1, f"{len(pids)} backends named {app_name}"
        return pids[0]

    @contextmanager
    def measure_worker(
        self, worker: subprocess.Popen, units: int, *, hog: bool = True, also: dict[str, int] | None = None
    ) -> Iterator[Measurement]:
        """CPU of `worker` and of its backend during the block (and of the processes `also`
        names, a server the worker uses, say); the caller fills in the measurement's `seconds`
        (from the operation's events). The hog, if any, runs meanwhile."""
        measurement = Measurement(units=units, seconds=0.0)
        backend = self.backend_pid(worker.app_name)
        pids = {"worker": worker.pid} | ({"backend": backend} if backend else {}) | (also or {})
        with self.hog.running() if hog else nullcontext():
            meter = CpuMeter(pids)
            yield measurement
            measurement.cpu = meter.stop()
        if backend:
            assert self.backend_pid(worker.app_name) == backend, "the worker's backend changed while measured"

    def run_baseline(self, name: str, *, measured: bool = True, **kwargs) -> Measurement:
        """Run baseline `name` of bench/targets.py in a process of its own (see `baseline_main`);
        `measured=False`: to prepare data, without the hog."""
        with self.hog.running() if measured else nullcontext():
            run = subprocess.run(
                [PYTHON, str(BENCH_SCRIPT), "--baseline", name, json.dumps(kwargs)],
                cwd=ROOT,
                env={**self.env, "PGAPPNAME": "bench-baseline"},
                capture_output=True,
                text=True,
                timeout=900,
            )
        if run.returncode != 0:
            raise RuntimeError(f"baseline {name} failed: {run.stderr[-2000:]}")
        result = json.loads(run.stdout.strip().splitlines()[-1])
        return Measurement(units=result["units"], seconds=result["seconds"], cpu=result["cpu"], extra=result["extra"])

    def alternate(self, first: Callable[[], None], second: Callable[[], None], *, repeats: int | None = None) -> None:
        """Run `first` and `second` `repeats` times each (default: --repeats), in the order ABBA
        ABBA...: a fixed order would hand one side the better minutes."""
        for repeat in range(repeats or self.args.repeats):
            for measure in (first, second) if repeat % 2 == 0 else (second, first):
                measure()

    def compare(
        self,
        target: str,
        ours: Callable[[], Measurement],
        baseline: Callable[[], Measurement],
        *,
        baseline_name: str,
        goal: float,
        on: str = "cpu",
        unit: str = "rows/s",
        repeats: int | None = None,
    ) -> tuple[list[Measurement], list[Measurement]]:
        """Alternate `ours` and `baseline` (ABBA, `repeats` times; default --repeats), then add
        a row: both sides' median (min-max) rate and CPU per 1,000 rows, and the median of the
        paired ratios. It passes when the ratio named by `on` ("cpu", or "wall" where CPU is
        not what the target is about) reaches `goal`."""
        mine: list[Measurement] = []
        theirs: list[Measurement] = []
        self.alternate(lambda: mine.append(ours()), lambda: theirs.append(baseline()), repeats=repeats)
        cpu, wall = paired_ratios(mine, theirs)
        judged = cpu if on == "cpu" and cpu else wall
        self.add(
            Row(
                target=f"{target} ({len(mine)} ABBA)",
                ours=describe(mine, unit),
                baseline=f"{describe(theirs, unit)}, {baseline_name}",
                cpu_ratio=spread(cpu, "{:.2f}") if cpu else "",
                wall_ratio=spread(wall, "{:.2f}"),
                goal=f"{'CPU' if judged is cpu else 'wall'} >= {goal:.2f}",
                passed=median(judged) >= goal,
            )
        )
        return mine, theirs

    # reporting

    def add(self, row: Row) -> None:
        self.rows.append(row)

    def report(self) -> None:
        print()
        print(table(self.rows), flush=True)


def baseline_main(name: str, kwargs: dict, baselines: dict[str, Callable[..., int | dict]]) -> None:
    """In the baseline's own process: set up Django (for the same connection settings as the
    worker), take the worker's niceness, run the baseline and print its measurement as JSON:
    its units, wall seconds, the CPU seconds of this process and of its backend, and what else
    it counted (a baseline returns its units, or a dict of "units" and those figures)."""
    import django

    django.setup()
    from django.conf import settings
    from django.db import connection

    os.nice(settings.LONG_TASK_WORKER_NICE)
    connection.ensure_connection()
    backend = None
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            backend = cursor.fetchone()[0]
    pids = {"process": os.getpid()} | ({"backend": backend} if backend else {})
    meter = CpuMeter(pids)
    started = time.perf_counter()
    result = baselines[name](**kwargs)
    seconds = time.perf_counter() - started
    extra = dict(result) if isinstance(result, dict) else {"units": result}
    units = extra.pop("units")
    print(json.dumps({"units": units, "seconds": seconds, "cpu": meter.stop(), "extra": extra}))


def peak_rss_mib(pid: int) -> float:
    return peak_rss_kib(pid) / 1024
