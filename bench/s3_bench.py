"""S3 storage next to local disk, in the same run (issue 12): a standalone script, to be folded
into the bench harness.

    .venv/bin/python bench/s3_bench.py                      # SQLite
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/long_task .venv/bin/python bench/s3_bench.py

It starts moto's S3 server on a loopback port itself, and for each size (100,000 and 1,000,000
rows, about 75 bytes a row) two stacks side by side, each a real gunicorn (--workers 2
--threads 8, as in production) and one real `process_tasks` worker, fresh for the size: one
keeps its files on local disk, the other in S3. Then:

- import rows/s, from the worker's claim to `completed` (the event log), median of 3, the two
  stacks alternated ABBA because this 2-core VM varies by a third from minute to minute;
  goal: S3 >= 0.8x local disk;
- resume -> first new row, ms, median of 3 pause/resume cycles at 10% and at 85% of the file;
  goal: at 85% within 50 ms of at 10% (resume is O(1): a ranged GET from the checkpoint);
- peak RSS of the web (upload) and of the worker (import), each size on fresh processes; goal:
  flat, within 5 MiB from 100,000 to 1,000,000 rows.

On PostgreSQL the database "<name>_s3bench" is dropped and created; on SQLite a temporary file.
The moto server shares the machine's two cores with the stack under test: an S3 far away costs
round trips instead.
"""

import argparse
import csv
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import harness  # noqa: E402  (bench/, the script's own folder)

from tests.machine import free_port, peak_rss_kib, port_open, recreate_postgres_database, wait_for  # noqa: E402
from tests.s3 import MotoServer  # noqa: E402

PYTHON = sys.executable
WORKER_POLL_SECONDS = 0.05
MiB = 1024 * 1024
STORES = ("local", "s3")


def write_csv(path: Path, rows: int) -> Path:
    cities = ["Amsterdam", "Berlin", "Chicago", "Delhi", "Edinburgh", "Fukuoka", "Geneva", "Houston"]
    with open(path, "w", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["name", "phone", "email", "city"])
        for n in range(1, rows + 1):
            writer.writerow([f"Person Number{n}", f"+1-555-{n:07d}", f"person.number{n}@example.com", cities[n % 8]])
    return path


def known(value: float | None) -> bool:
    return value is not None and value == value  # not NaN


def median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2] if ordered else float("nan")


class Client(harness.Client):
    """The API of one web process: the bench harness's client, with the answer's body only."""

    def call(self, verb: str, **body) -> dict:
        _, payload, _ = super().call(verb, **body)
        return payload

    def upload(self, path: Path) -> tuple[int, float]:
        """Register, then stream `path` to /upload/; (op_id, seconds of the upload)."""
        op_id = self.call("register")["op_id"]
        return op_id, super().upload(op_id, path)


@dataclass
class Stack:
    """A web server and a worker keeping their files in one store."""

    store: str
    web: subprocess.Popen
    worker: subprocess.Popen
    client: Client
    rates: list[float] = field(default_factory=list)
    uploads: list[float] = field(default_factory=list)


class S3Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.workdir = Path(tempfile.mkdtemp(prefix="long-task-s3-bench-"))
        self.processes: list[subprocess.Popen] = []
        self.results: dict[tuple[str, int, str], float] = {}

    def setup(self) -> None:
        self.moto = MotoServer(log_path=self.workdir / "moto.log")
        self.bucket = self.moto.new_bucket("bench")
        url = os.environ.get("DATABASE_URL", "")
        database = recreate_postgres_database(url, suffix="_s3bench") if url else f"sqlite:///{self.workdir}/b.sqlite3"
        self.env = {
            **os.environ,
            "DATABASE_URL": database,
            "DJANGO_SETTINGS_MODULE": "long_task.settings",
            "DJANGO_DEBUG": "0",
            "DJANGO_SECRET_KEY": "bench-only-secret-key-" + "x" * 40,
            "DJANGO_SECURE_SSL_REDIRECT": "0",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "LONG_TASK_MEDIA_ROOT": str(self.workdir / "media"),
            "LONG_TASK_LOG_LEVEL": "WARNING",
        }
        os.environ.update(self.env)
        import django

        django.setup()
        from django.contrib.auth import get_user_model
        from django.core.management import call_command
        from django.db import connection
        from rest_framework.authtoken.models import Token

        call_command("migrate", verbosity=0)
        self.token = Token.objects.create(user=get_user_model().objects.create_user("bench")).key
        self.vendor = connection.vendor
        print(f"S3 next to local disk on {self.vendor}, {os.cpu_count()} cores, {self.workdir}", flush=True)

    def teardown(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        self.moto.stop()

    # processes

    def _spawn(self, command: list[str], name: str, env: dict) -> subprocess.Popen:
        log = open(self.workdir / f"{name}-{len(self.processes)}.log", "wb")  # noqa: SIM115
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.processes.append(process)
        return process

    def start_stack(self, store: str) -> Stack:
        env = {**self.env, **(self.bucket.env() if store == "s3" else {})}
        port = free_port()
        gunicorn = str(Path(PYTHON).parent / "gunicorn")
        web = self._spawn(
            [gunicorn, "long_task.wsgi", "-b", f"127.0.0.1:{port}", "--workers", "2", "--threads", "8"]
            + ["--timeout", "600"],
            f"web-{store}",
            env,
        )
        worker = self._spawn(
            [PYTHON, "manage.py", "process_tasks", "--sleep", str(WORKER_POLL_SECONDS)], f"worker-{store}", env
        )
        wait_for(lambda: port_open(port), what=f"the {store} web server")
        return Stack(store, web, worker, Client(port, self.token))

    def stop_stack(self, stack: Stack) -> None:
        for process in (stack.web, stack.worker):
            process.send_signal(signal.SIGTERM)
        for process in (stack.web, stack.worker):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    @staticmethod
    def activate(stack: Stack, stacks: list[Stack]) -> None:
        """Only `stack`'s worker runs: the stacks share the database, so the other worker would
        take the operation (and fail to find its file, which is in the other store). Stopped,
        not killed, so that each keeps its peak RSS."""
        for other in stacks:
            if other is not stack:
                other.worker.send_signal(signal.SIGSTOP)
        stack.worker.send_signal(signal.SIGCONT)

    @staticmethod
    def web_peak_mib(stack: Stack) -> float:
        import psutil

        return max(peak_rss_kib(child.pid) / 1024 for child in psutil.Process(stack.web.pid).children())

    # operations

    def op(self, op_id: int):
        from operations.models import Operation

        return Operation.objects.get(pk=op_id)

    def wait_state(self, op_id: int, *states: str):
        return wait_for(lambda: self.op(op_id).state in states, timeout=900, what=f"operation {op_id} {states}")

    def import_seconds(self, op_id: int) -> float:
        events = self.op(op_id).events
        claimed = events.filter(to_state="running").order_by("id").first().at
        return (events.get(to_state="completed").at - claimed).total_seconds()

    def delete_rows(self, op_id: int) -> None:
        """Untimed: every import starts from a table of the same size."""
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM operations_uploadedrow WHERE operation_id = %s", [op_id])
            if connection.vendor == "postgresql":
                cursor.execute("VACUUM operations_uploadedrow")

    # the measurements

    def size(self, rows: int) -> None:
        path = write_csv(self.workdir / f"rows-{rows}.csv", rows)
        stacks = [self.start_stack(store) for store in STORES]

        def import_once(stack: Stack) -> None:
            self.activate(stack, stacks)
            op_id, seconds = stack.client.upload(path)
            stack.uploads.append(seconds)
            self.wait_state(op_id, "completed", "failed")
            assert self.op(op_id).state == "completed", self.op(op_id).error
            stack.rates.append(rows / self.import_seconds(op_id))
            self.delete_rows(op_id)

        for repeat in range(self.args.repeats):  # ABBA
            for stack in stacks if repeat % 2 == 0 else stacks[::-1]:
                import_once(stack)
        for stack in stacks:
            self.results[(stack.store, rows, "import")] = median(stack.rates)
            self.results[(stack.store, rows, "upload MB/s")] = path.stat().st_size / 1e6 / median(stack.uploads)
            self.activate(stack, stacks)
            for share, ms in self.resume_ms(stack, path, rows).items():
                self.results[(stack.store, rows, f"resume {share:.0%}")] = ms
            self.results[(stack.store, rows, "web MiB")] = self.web_peak_mib(stack)
            self.results[(stack.store, rows, "worker MiB")] = peak_rss_kib(stack.worker.pid) / 1024
        for stack in stacks:
            stack.worker.send_signal(signal.SIGCONT)
            self.stop_stack(stack)
        self.results[("raw", rows, "upload MB/s")] = path.stat().st_size / 1e6 / self.raw_put_seconds(path)
        print(f"  {rows:,} rows measured", flush=True)

    def raw_put_seconds(self, path: Path) -> float:
        """boto3 alone, from this process: the file up as a multipart upload of 8 MiB parts
        sent one after another (what the web does, without HTTP in front): moto's speed."""
        client = self.moto.client()
        key = f"raw/{path.name}"
        started = time.perf_counter()
        upload = client.create_multipart_upload(Bucket=self.bucket.name, Key=key)["UploadId"]
        parts = []
        with open(path, "rb") as source:
            while data := source.read(8 * MiB):
                number = len(parts) + 1
                sent = client.upload_part(
                    Bucket=self.bucket.name, Key=key, UploadId=upload, PartNumber=number, Body=data
                )
                parts.append({"PartNumber": number, "ETag": sent["ETag"]})
        client.complete_multipart_upload(
            Bucket=self.bucket.name, Key=key, UploadId=upload, MultipartUpload={"Parts": parts}
        )
        seconds = time.perf_counter() - started
        client.delete_object(Bucket=self.bucket.name, Key=key)
        return seconds

    def resume_ms(self, stack: Stack, path: Path, rows: int) -> dict[float, float]:
        """Pause at 10% and at 85%; each time 3 resumes, from /resume/ answering to the first
        new committed row; their medians."""
        op_id, _ = stack.client.upload(path)
        medians = {}
        for share in (0.10, 0.85):
            target = int(rows * share)
            wait_for(lambda target=target: self.op(op_id).lines_finished >= target, timeout=600, interval=0.002)
            times = []
            for _ in range(3):
                body = stack.client.call("pause", op_id=op_id, wait=10)
                if body.get("state") != "paused":
                    break  # completed before the pause landed
                at = body["lines_finished"]
                stack.client.call("resume", op_id=op_id)
                answered = time.perf_counter()
                wait_for(
                    lambda at=at: self.op(op_id).lines_finished > at or self.op(op_id).state == "completed",
                    timeout=60,
                    interval=0.001,
                )
                times.append((time.perf_counter() - answered) * 1000)
            medians[share] = median(times) if len(times) == 3 else float("nan")
        stack.client.call("terminate", op_id=op_id, force=True)
        self.wait_state(op_id, "terminated", "completed")
        return medians

    # the table

    def report(self) -> None:
        r = self.results
        small, big = self.args.sizes
        table = [["target", "local disk", "S3 (moto)", "S3 vs local", "goal", "result"]]
        for rows in (small, big):
            local, s3 = r.get(("local", rows, "import")), r.get(("s3", rows, "import"))
            if local and s3:
                table.append(
                    [f"import rows/s, {rows:,} rows (median of {self.args.repeats})", f"{local:,.0f}", f"{s3:,.0f}"]
                    + [f"{s3 / local:.2f}x", ">= 0.80x", "PASS" if s3 / local >= 0.8 else "FAIL"]
                )
        for rows in (small, big):
            local, s3 = r.get(("local", rows, "upload MB/s")), r.get(("s3", rows, "upload MB/s"))
            raw = r.get(("raw", rows, "upload MB/s"))
            if local and s3:
                ratio = f"{s3 / local:.2f}x"
                s3_text = f"{s3:,.0f} (boto3 alone: {raw:,.0f})" if raw else f"{s3:,.0f}"
                table.append([f"upload MB/s, {rows:,} rows", f"{local:,.0f}", s3_text, ratio, "", ""])
        for rows in (small, big):
            cells = []
            for store in STORES:
                at10, at85 = r.get((store, rows, "resume 10%")), r.get((store, rows, "resume 85%"))
                cells.append((at10, at85))
            text = [f"{a:.0f} / {b:.0f} ms ({b - a:+.0f})" if known(a) and known(b) else "n/a" for a, b in cells]
            s3_10, s3_85 = cells[1]  # the goal is S3's; local disk is the reference
            ok = known(s3_10) and known(s3_85) and abs(s3_85 - s3_10) <= 50
            table.append(
                [f"resume -> first new row at 10% / 85%, {rows:,} rows", *text, ""]
                + ["S3: 85% within 50 ms of 10%", "PASS" if ok else "FAIL"]
            )
        for who in ("web", "worker"):
            row = [f"peak RSS {who} ({'upload' if who == 'web' else 'import'}), {small:,} -> {big:,} rows"]
            for store in STORES:
                a, b = r.get((store, small, f"{who} MiB")), r.get((store, big, f"{who} MiB"))
                row.append(f"{a:.1f} -> {b:.1f} MiB ({b - a:+.1f})" if a and b else "n/a")
            flat = bool(a and b) and abs(b - a) <= 5  # S3's
            table.append([*row, "", "S3: flat, +-5 MiB", "PASS" if flat else "FAIL"])
        widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
        lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) + " |" for line in table]
        lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
        print(f"\n{self.vendor}, {time.strftime('%Y-%m-%d')}")
        print("\n".join(lines), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs=2, default=[100_000, 1_000_000], metavar=("SMALL", "LARGE"))
    parser.add_argument("--repeats", type=int, default=3, help="imports per stack and size, alternated")
    args = parser.parse_args()
    bench = S3Bench(args)
    try:
        bench.setup()
        for rows in args.sizes:
            bench.size(rows)
    finally:
        bench.teardown()
        bench.report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
