"""Chaos: several `process_tasks` workers, tens of operations, random pause / resume /
terminate requests, and SIGKILL or SIGTERM of random workers at random instants, each replaced.
At the end every operation is checked row by row, and the committed chunks of every operation
are checked for two workers at once. Prints a table.

    make chaos                                    # SQLite, about two minutes
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/long_task_chaos make chaos
    make chaos CHAOS_ARGS="--ops 60 --workers 6 --seconds 300"

The database named by DATABASE_URL is dropped and created again. tests/processes/test_chaos.py runs a
small variant inside the test suite.
"""

import argparse
import logging
import os
import random
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

S_ACTIVE = ("queued", "running", "pausing", "terminating")


@dataclass
class ChaosConfig:
    ops: int = 12
    rows: int = 3_000
    workers: int = 3
    seconds: float = 20.0
    seed: int = 1
    # Small, slow chunks (about 20 rows in 50 ms) keep every operation in flight for the whole
    # run, with a chunk open most of the time: pauses, terminates and kills land mid-chunk.
    chunk_delay: float = 0.05
    chunk_seconds: float = 0.01
    lease_seconds: float = 2.0
    bad_every: int = 97  # every 97th data row has a field too few (a row error)


@dataclass
class ChaosReport:
    operations: int = 0
    kills: int = 0
    sigterms: int = 0
    pauses: int = 0
    resumes: int = 0
    terminates: int = 0
    final_states: dict = field(default_factory=dict)
    rows_checked: int = 0
    lost_rows: int = 0
    extra_rows: int = 0
    duplicate_rows: int = 0
    overlaps: int = 0
    chunks: int = 0
    problems: list = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.lost_rows or self.extra_rows or self.duplicate_rows or self.overlaps or self.problems)

    def table(self) -> str:
        states = ", ".join(f"{state} {count}" for state, count in sorted(self.final_states.items()))
        rows = [
            ("operations", f"{self.operations} ({states})"),
            ("worker kills (SIGKILL)", self.kills),
            ("worker stops (SIGTERM)", self.sigterms),
            ("pauses", self.pauses),
            ("resumes", self.resumes),
            ("terminates", self.terminates),
            ("committed chunks", self.chunks),
            ("rows checked", self.rows_checked),
            ("lost rows", self.lost_rows),
            ("duplicate rows", self.duplicate_rows),
            ("extra rows", self.extra_rows),
            ("overlaps", self.overlaps),
        ]
        width = max(len(name) for name, _ in rows)
        lines = [f"{name:<{width}}  {value}" for name, value in rows]
        lines += [f"PROBLEM: {problem}" for problem in self.problems[:20]]
        return "\n".join(lines)


def chaos_csv(rows: int, bad_every: int) -> tuple[bytes, set[int]]:
    from tests.support import csv_bytes

    lines = csv_bytes(rows).decode().splitlines(keepends=True)
    bad = set(range(bad_every, rows + 1, bad_every)) if bad_every else set()
    for n in bad:
        lines[n] = ",".join(lines[n].split(",")[:3]) + "\n"
    return "".join(lines).encode(), bad


def run_chaos(config: ChaosConfig, workers, client, *, log=print) -> ChaosReport:
    """Run the chaos with `workers` (a tests.support.Workers) and `client` (an authenticated
    APIClient), then check everything. The database must be empty of operations."""
    from operations.models import Operation
    from tests.support import overlapping_chunks

    rng = random.Random(config.seed)
    report = ChaosReport(operations=config.ops)
    content, bad_lines = chaos_csv(config.rows, config.bad_every)

    def start_worker():
        return workers.start(
            chunk_delay=config.chunk_delay,
            lease_seconds=config.lease_seconds,
            LONG_TASK_CHUNK_SECONDS=config.chunk_seconds,
        )

    live = [start_worker() for _ in range(config.workers)]
    op_ids = [_started_upload(client, content) for _ in range(config.ops)]
    deadline = time.monotonic() + config.seconds
    while time.monotonic() < deadline:
        _random_action(rng, client, op_ids, live, start_worker, report)
        time.sleep(rng.uniform(0.02, 0.25))

    log("chaos over; letting the workers settle every operation...")
    _settle(op_ids, report)
    _stop(live)

    accepted = [n for n in range(1, config.rows + 1) if n not in bad_lines]
    for op in Operation.objects.filter(pk__in=op_ids):
        _check_operation(op, config, accepted, bad_lines, report)

    records = workers.chunk_records()
    report.chunks = len(records)
    report.overlaps = len(overlapping_chunks(records))
    return report


def _started_upload(client, content: bytes) -> int:
    """A registered operation with `content` uploaded (queued)."""
    from tests.support import upload_file

    op_id = client.post("/register/", {}, format="json").json()["op_id"]
    answer = client.post("/upload/", {"op_id": op_id, "file": upload_file(content)})
    assert answer.status_code == 202, answer.content
    return op_id


def _random_action(rng: random.Random, client, op_ids: list[int], live: list, start_worker, report: ChaosReport):
    """One request about a random operation, or a signal to a random worker of `live` (replaced
    at once)."""
    action = rng.choices(
        ["pause", "resume", "terminate", "kill", "sigterm", "status"], weights=[30, 25, 12, 10, 5, 18]
    )[0]
    op_id = rng.choice(op_ids)
    if action == "pause":
        report.pauses += client.post("/pause/", {"op_id": op_id}).status_code == 200
    elif action == "resume":
        report.resumes += client.post("/resume/", {"op_id": op_id}).status_code == 202
    elif action == "terminate":
        body = {"op_id": op_id, "force": rng.random() < 0.5}
        report.terminates += client.post("/terminate/", body, format="json").status_code == 200
    elif action in ("kill", "sigterm"):
        victim = live.pop(rng.randrange(len(live)))
        victim.send_signal(signal.SIGKILL if action == "kill" else signal.SIGTERM)
        if action == "kill":
            report.kills += 1
        else:
            report.sigterms += 1
        live.append(start_worker())
    else:
        client.post("/get_status/", {"op_id": op_id})


def _settle(op_ids: list[int], report: ChaosReport) -> None:
    """Wait until no operation is active any more (at most 300 s)."""
    from operations.models import Operation

    settle_deadline = time.monotonic() + 300
    while Operation.objects.filter(pk__in=op_ids, state__in=S_ACTIVE).exists():
        if time.monotonic() > settle_deadline:
            report.problems.append("operations still active after 300 s")
            return
        time.sleep(0.2)


def _stop(live: list) -> None:
    for process in live:
        process.send_signal(signal.SIGTERM)
    for process in live:
        process.wait(timeout=30)


def _stored_line_counts(op_id: int) -> dict[int, int]:
    """How many times each line of the operation is stored."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT line_number, count(*) FROM operations_uploadedrow WHERE operation_id = %s GROUP BY line_number",
            [op_id],
        )
        return dict(cursor.fetchall())


def _check_operation(op, config: ChaosConfig, accepted: list[int], bad_lines: set[int], report: ChaosReport) -> None:
    """Every row `op` should hold, by its final state and its counters, and none else."""
    report.final_states[op.state] = report.final_states.get(op.state, 0) + 1
    counts = _stored_line_counts(op.pk)
    report.duplicate_rows += sum(count - 1 for count in counts.values())
    if op.state == "terminated":
        expected = set()
        if op.row_errors.exists():
            report.problems.append(f"operation {op.pk}: row errors left after terminate")
    elif op.state in ("completed", "paused", "failed"):
        expected = {n for n in accepted if n <= op.lines_finished}
        _check_counters(op, config, bad_lines, report)
    else:
        report.problems.append(f"operation {op.pk} left in state {op.state}")
        return
    stored = set(counts)
    report.rows_checked += len(stored)
    report.lost_rows += len(expected - stored)
    report.extra_rows += len(stored - expected)


def _check_counters(op, config: ChaosConfig, bad_lines: set[int], report: ChaosReport) -> None:
    if op.state == "completed" and op.lines_finished != config.rows:
        report.problems.append(f"operation {op.pk}: completed at {op.lines_finished} lines")
    failed_lines = {n for n in bad_lines if n <= op.lines_finished}
    if op.lines_failed != len(failed_lines):
        report.problems.append(f"operation {op.pk}: lines_failed {op.lines_failed} != {len(failed_lines)}")
    if op.state == "failed":
        report.problems.append(f"operation {op.pk} failed: {op.error[:200]}")


# --- make chaos ---------------------------------------------------------------------------------


def _fresh_database(url: str, workdir: Path) -> str:
    """Drop and create the database of `url` (PostgreSQL), or a new SQLite file."""
    if not url:
        return f"sqlite:///{workdir / 'chaos.sqlite3'}"
    from testbed.machine import recreate_postgres_database

    return recreate_postgres_database(url)


def main() -> int:
    defaults = ChaosConfig()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ops", type=int, default=40)
    parser.add_argument("--rows", type=int, default=5_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=90.0)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--lease", type=float, default=defaults.lease_seconds)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="long-task-chaos-"))
    os.environ["DATABASE_URL"] = _fresh_database(os.environ.get("DATABASE_URL", ""), workdir)
    os.environ["LONG_TASK_MEDIA_ROOT"] = str(workdir / "media")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.test.utils import setup_test_environment

    from tests.support import Workers, token_client

    setup_test_environment()  # the in-process API client's host name
    logging.getLogger("django.request").setLevel(logging.ERROR)  # 409s are part of the game
    call_command("migrate", verbosity=0)
    from django.contrib.auth import get_user_model

    client = token_client(get_user_model().objects.create_user("chaos"))
    config = ChaosConfig(
        ops=args.ops,
        rows=args.rows,
        workers=args.workers,
        seconds=args.seconds,
        seed=args.seed,
        lease_seconds=args.lease,
    )
    from django.db import connection

    print(f"chaos on {connection.vendor}: {config}")
    workers = Workers(media_root=workdir / "media", log_dir=workdir)
    started = time.monotonic()
    try:
        report = run_chaos(config, workers, client)
    finally:
        workers.stop_all()
    print(f"\nchaos finished in {time.monotonic() - started:.0f} s (logs in {workdir})\n")
    print(report.table())
    return 0 if report.clean else 1


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(main())
