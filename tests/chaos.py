"""Chaos: several `process_tasks` workers, tens of operations, random pause / resume /
terminate requests, and SIGKILL or SIGTERM of random workers at random instants, each replaced.
Every second operation imports into the `contacts` target's table (SPEC §13), the others into
UploadedRow. At the end every operation is checked row by row in its table, the contacts the
application wrote before are checked untouched, and the committed chunks of every operation
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
    # Every `target_every`-th operation imports into the contacts target (0: none), its own
    # e-mail addresses, with cells that do not convert and keys repeated in its file.
    target_every: int = 2
    application_contacts: int = 50  # contacts the application wrote before: no import may touch them


@dataclass
class ChaosReport:
    operations: int = 0
    target_operations: int = 0
    kills: int = 0
    sigterms: int = 0
    pauses: int = 0
    resumes: int = 0
    terminates: int = 0
    final_states: dict = field(default_factory=dict)
    rows_checked: int = 0
    target_rows_checked: int = 0
    lost_rows: int = 0
    extra_rows: int = 0
    duplicate_rows: int = 0
    overlaps: int = 0
    application_rows_changed: int = 0
    chunks: int = 0
    problems: list = field(default_factory=list)

    @property
    def clean(self) -> bool:
        wrong = self.lost_rows or self.extra_rows or self.duplicate_rows or self.overlaps
        return not (wrong or self.application_rows_changed or self.problems)

    def table(self) -> str:
        states = ", ".join(f"{state} {count}" for state, count in sorted(self.final_states.items()))
        rows = [
            ("operations", f"{self.operations} ({states})"),
            ("of which into contacts", self.target_operations),
            ("worker kills (SIGKILL)", self.kills),
            ("worker stops (SIGTERM)", self.sigterms),
            ("pauses", self.pauses),
            ("resumes", self.resumes),
            ("terminates", self.terminates),
            ("committed chunks", self.chunks),
            ("rows checked", self.rows_checked),
            ("of which in contacts", self.target_rows_checked),
            ("lost rows", self.lost_rows),
            ("duplicate rows", self.duplicate_rows),
            ("extra rows", self.extra_rows),
            ("overlaps", self.overlaps),
            ("application contacts changed", self.application_rows_changed),
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


@dataclass
class ChaosFile:
    """What one operation imports: the file, the lines an import stores, the lines it rejects,
    and into which target (None: UploadedRow)."""

    content: bytes
    accepted: list[int]
    bad_lines: set[int]
    target: str | None = None


def upload_file_of(config: ChaosConfig) -> ChaosFile:
    content, bad_lines = chaos_csv(config.rows, config.bad_every)
    accepted = [n for n in range(1, config.rows + 1) if n not in bad_lines]
    return ChaosFile(content, accepted, bad_lines)


def contacts_file_of(config: ChaosConfig, index: int) -> ChaosFile:
    """The chaos file for the contacts target, with addresses of its own (`op<index>`): besides
    the rows with a field too few, every 89th row has no name (required) and every 83rd repeats
    the address of the row before (a unique violation within the file). The lines stored and
    rejected are worked out row by row beside it, as the table must end up."""
    content, short_rows = chaos_csv(config.rows, config.bad_every)
    lines = content.decode().replace("@example.com", f"@op{index}.example.com").splitlines(keepends=True)
    stored_emails: set[str] = set()
    accepted, bad = [], set(short_rows)
    for n in range(1, config.rows + 1):
        fields = lines[n].rstrip("\n").split(",")
        if n % 89 == 0:
            fields[0] = ""
        elif n % 83 == 0:
            fields[2] = lines[n - 1].rstrip("\n").split(",")[2]
        lines[n] = ",".join(fields) + "\n"
        if n in short_rows or not fields[0] or fields[2] in stored_emails:
            bad.add(n)
        else:
            stored_emails.add(fields[2])
            accepted.append(n)
    return ChaosFile("".join(lines).encode(), accepted, bad, target="contacts")


def application_contacts(count: int) -> list[tuple]:
    """Contacts the application writes itself (no import): made before the chaos, the same after."""
    from contacts.models import Contact

    Contact.objects.bulk_create(Contact(name=f"app {n}", email=f"app{n}@example.org") for n in range(count))
    return contacts_of_application()


def contacts_of_application() -> list[tuple]:
    from contacts.models import Contact

    rows = Contact.objects.filter(import_operation__isnull=True).order_by("pk")
    return list(rows.values_list("pk", "name", "email", "phone", "city", "signup_date", "score"))


def run_chaos(config: ChaosConfig, workers, client, *, log=print) -> ChaosReport:
    """Run the chaos with `workers` (a tests.support.Workers) and `client` (an authenticated
    APIClient), then check everything. The database must be empty of operations."""
    from operations.models import Operation
    from tests.support import overlapping_chunks

    rng = random.Random(config.seed)
    report = ChaosReport(operations=config.ops)
    files = [
        contacts_file_of(config, i) if config.target_every and i % config.target_every == 1 else upload_file_of(config)
        for i in range(config.ops)
    ]
    report.target_operations = sum(file.target is not None for file in files)
    before = application_contacts(config.application_contacts)

    def start_worker():
        return workers.start(
            chunk_delay=config.chunk_delay,
            lease_seconds=config.lease_seconds,
            LONG_TASK_CHUNK_SECONDS=config.chunk_seconds,
            LONG_TASK_CANCELLABLE_CHUNK_SECONDS=config.chunk_seconds,
        )

    live = [start_worker() for _ in range(config.workers)]
    op_ids = [_started_upload(client, file) for file in files]
    deadline = time.monotonic() + config.seconds
    while time.monotonic() < deadline:
        _random_action(rng, client, op_ids, live, start_worker, report)
        time.sleep(rng.uniform(0.02, 0.25))

    log("chaos over; letting the workers settle every operation...")
    _settle(op_ids, report)
    _stop(live)

    file_of = dict(zip(op_ids, files, strict=True))
    for op in Operation.objects.filter(pk__in=op_ids):
        _check_operation(op, config, file_of[op.pk], report)
    _check_other_contacts(op_ids, before, report)

    records = workers.chunk_records()
    report.chunks = len(records)
    report.overlaps = len(overlapping_chunks(records))
    return report


def _started_upload(client, file: ChaosFile) -> int:
    """A registered operation with `file` uploaded (queued)."""
    from tests.support import upload_file

    options = {"op_type": "Upload", "target": file.target} if file.target else {}
    op_id = client.post("/register/", options, format="json").json()["op_id"]
    answer = client.post("/upload/", {"op_id": op_id, "file": upload_file(file.content)})
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


def _stored_line_counts(op_id: int, target: str | None) -> dict[int, int]:
    """How many times each line of the operation is stored, in UploadedRow or in contacts (with
    a name that is not that line's counted as a row of another line: it is not the line's row)."""
    from django.db import connection

    with connection.cursor() as cursor:
        if target is None:
            cursor.execute(
                "SELECT line_number, count(*) FROM operations_uploadedrow WHERE operation_id = %s GROUP BY line_number",
                [op_id],
            )
            return dict(cursor.fetchall())
        cursor.execute("SELECT import_line, name FROM contacts_contact WHERE import_operation = %s", [op_id])
        counts: dict[int, int] = {}
        for line, name in cursor.fetchall():
            key = line if name == f"name{line}" else -line
            counts[key] = counts.get(key, 0) + 1
        return counts


def _check_operation(op, config: ChaosConfig, file: ChaosFile, report: ChaosReport) -> None:
    """Every row `op` should hold, by its final state and its counters, and none else."""
    report.final_states[op.state] = report.final_states.get(op.state, 0) + 1
    counts = _stored_line_counts(op.pk, file.target)
    report.duplicate_rows += sum(count - 1 for count in counts.values())
    if op.state == "terminated":
        expected = set()
        if op.row_errors.exists():
            report.problems.append(f"operation {op.pk}: row errors left after terminate")
    elif op.state in ("completed", "paused", "failed"):
        expected = {n for n in file.accepted if n <= op.lines_finished}
        _check_counters(op, config, file.bad_lines, report)
    else:
        report.problems.append(f"operation {op.pk} left in state {op.state}")
        return
    stored = set(counts)
    report.rows_checked += len(stored)
    if file.target is not None:
        report.target_rows_checked += len(stored)
    report.lost_rows += len(expected - stored)
    report.extra_rows += len(stored - expected)


def _check_other_contacts(op_ids: list[int], before: list[tuple], report: ChaosReport) -> None:
    """The application's contacts as they were, and no contact of an import the chaos did not run."""
    from contacts.models import Contact

    after = contacts_of_application()
    report.application_rows_changed += len(set(before) ^ set(after))
    report.extra_rows += (
        Contact.objects.exclude(import_operation__isnull=True).exclude(import_operation__in=op_ids).count()
    )


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
