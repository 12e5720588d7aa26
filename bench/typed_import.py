"""The targets of an import into the application's own table (SPEC §13): an Upload with
`target=contacts`, its cells converted and checked, written into contacts_contact.

11. typed import: CPU per row >= 0.8x a raw driver loop that converts the same columns in plain
    Python and writes them in one transaction (COPY on PostgreSQL, executemany on SQLite), the
    rejected rows counted alike by both (the bench stops if they differ); the worker's peak RSS
    <= 80 MiB, the big file's within 5 MiB of the small one's; pause p99 <= 100 ms.
12. typed import vs django-import-export: the same model, a file of 100,000 rows
    (--import-export-rows; at most --rows), through
    `ModelResource.import_data` in bulk mode, set up for speed as its documentation advises
    (`use_bulk`, `skip_diff`, `skip_html_diff`, `force_init_instance`) and to reject what ours
    rejects (`clean_model_instances`: the model's validation, unique e-mail included; a score
    that is no number an invalid row rather than an error that rolls everything back): ours
    >= 20x cheaper in CPU.

The file (`write_contacts_csv`) has the target's six columns; one row in a hundred is bad, by
turns: a score that is no integer, a date that does not exist, an address with no @, no name (it
is required), a name over 100 characters, the address of a row 1,050 lines before (unique:
another of django-import-export's batches, so that its check against the table sees it).
"""

import csv
import datetime
import re
from pathlib import Path

from harness import Harness, Measurement, Row, peak_rss_mib, spread
from targets import add_pause_row, pause_samples

TARGET = "contacts"
TABLE = "contacts_contact"
HEADER = ["name", "email", "phone", "city", "signup_date", "score"]
BAD_EVERY = 100
DUPLICATE_DISTANCE = 1_050
CITIES = ["Paris", "Berlin", "Lisbon", "Oslo", "Rome", "Vienna", "Prague", "Dublin"]


def good_row(n: int) -> list[str]:
    """Line n's values; some optional ones empty."""
    return [
        f"Person {n}",
        email_of(n),
        "" if n % 7 == 0 else f"+1555{n:07d}",
        "" if n % 9 == 0 else CITIES[n % 8],
        "" if n % 11 == 0 else f"20{10 + n % 15:02d}-{1 + n % 12:02d}-{1 + n % 28:02d}",
        "" if n % 13 == 0 else str(n % 1000 - 100),
    ]


def email_of(n: int) -> str:
    return f"person{n}@example{n % 10}.com"


def bad_row(n: int) -> list[str]:
    """Line n (a multiple of BAD_EVERY) with one bad value, a kind for each hundred by turns."""
    row = good_row(n)
    kind = (n // BAD_EVERY) % 6
    if kind == 5 and n <= DUPLICATE_DISTANCE:
        kind = 0  # no row that far back yet
    if kind == 0:
        row[5] = f"{n}x"
    elif kind == 1:
        row[4] = "2023-02-30"
    elif kind == 2:
        row[1] = f"person{n}.example.com"
    elif kind == 3:
        row[0] = ""
    elif kind == 4:
        row[0] = "N" * 101
    else:
        row[1] = email_of(n - DUPLICATE_DISTANCE)
    return row


def write_contacts_csv(path: Path, rows: int) -> Path:
    with open(path, "w", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(HEADER)
        for n in range(1, rows + 1):
            writer.writerow(bad_row(n) if n % BAD_EVERY == 0 else good_row(n))
    return path


# --- baselines, each run in a process of its own ------------------------------------------------


def raw_typed_load(op: int, path: str, rows: int) -> dict:
    """The rows of `path` into the contacts table for operation `op`, in one transaction: each
    column converted and checked in plain Python (text and its length, an address, a date, an
    integer; a row whose address came before is refused, as the unique index would), written
    with COPY on PostgreSQL, executemany on SQLite. Returns the units and the rows it refused."""
    from django.db import connection, transaction

    looks_like_address = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+").fullmatch
    postgresql = connection.vendor == "postgresql"
    to_date = datetime.date.fromisoformat
    seen: set[str] = set()
    refused = 0

    def records():
        nonlocal refused
        with open(path, newline="", encoding="utf-8") as source:
            reader = csv.reader(source)
            next(reader)
            for line, (name, email, phone, city, day, score) in enumerate(reader, 1):
                try:
                    if not name or len(name) > 100 or len(phone) > 40 or len(city) > 100:
                        raise ValueError
                    if email and (len(email) > 254 or email in seen or not looks_like_address(email)):
                        raise ValueError
                    signup = (to_date(day) if postgresql else to_date(day).isoformat()) if day else None
                    points = int(score) if score else None
                except ValueError:
                    refused += 1
                    continue
                if email:
                    seen.add(email)
                yield (op, line, name, email or None, phone, city, signup, points)

    columns = "import_operation, import_line, name, email, phone, city, signup_date, score"
    with transaction.atomic():
        raw = connection.connection
        if postgresql:
            with raw.cursor() as cursor, cursor.copy(f"COPY {TABLE} ({columns}) FROM STDIN") as copy:
                for record in records():
                    copy.write_row(record)
        else:
            raw.executemany(f"INSERT INTO {TABLE} ({columns}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", records())
    return {"units": rows, "rejected": refused}


def import_export_load(path: str, rows: int) -> dict:
    """The file through django-import-export: a tablib Dataset of the CSV, then
    `ModelResource.import_data` in bulk mode (its batches of 1,000 in one transaction), the
    model's validation on each instance. Returns the units and the rows it found invalid."""
    import tablib
    from import_export import fields, resources, widgets

    from contacts.models import Contact

    class IntegerWidget(widgets.IntegerWidget):
        """A cell that is no number makes an invalid row, as any other bad value: the widget's
        own InvalidOperation would be an error row, which rolls the whole import back."""

        def clean(self, value, row=None, **kwargs):
            try:
                return super().clean(value, row=row, **kwargs)
            except ArithmeticError:
                raise ValueError(f"{value!r} is not an integer") from None

    class ContactResource(resources.ModelResource):
        score = fields.Field(attribute="score", column_name="score", widget=IntegerWidget())

        class Meta:
            model = Contact
            fields = tuple(HEADER)
            use_bulk = True
            batch_size = 1_000
            force_init_instance = True  # new rows only: no look-up of an existing instance a row
            skip_diff = True
            skip_html_diff = True
            clean_model_instances = True

    with open(path, newline="", encoding="utf-8") as source:
        dataset = tablib.Dataset().load(source.read(), format="csv")
    result = ContactResource().import_data(dataset, dry_run=False, raise_errors=False)
    if result.has_errors():
        raise RuntimeError(f"django-import-export failed: {[e.error for e in result.base_errors][:3]}")
    return {"units": rows, "rejected": len(result.invalid_rows)}


BASELINES = {"raw_typed_load": raw_typed_load, "import_export_load": import_export_load}


# --- helpers ----------------------------------------------------------------------------------


def typed_files(h: Harness) -> None:
    """The contacts files (once a bench): the big and the small file's sizes, and the one for
    django-import-export (--import-export-rows; the big file if that is as many or more)."""
    if hasattr(h, "typed_big"):
        return
    h.typed_big = write_contacts_csv(h.workdir / "contacts-big.csv", h.args.rows)
    h.typed_small = write_contacts_csv(h.workdir / "contacts-small.csv", h.args.small_rows)
    h.import_export_rows = min(h.args.rows, h.args.import_export_rows)
    if h.import_export_rows == h.args.rows:
        h.typed_import_export = h.typed_big
    else:
        h.typed_import_export = write_contacts_csv(h.workdir / "contacts-die.csv", h.import_export_rows)


def typed_worker(h: Harness):
    """The worker of these targets: a fresh one, alone to take operations (`h.only`)."""
    if getattr(h, "typed", None) is None or h.typed.poll() is not None:
        h.typed = h.start_worker()
    h.only(h.typed)
    return h.typed


def empty_contacts(h: Harness, op_id: int | None = None) -> None:
    """Untimed: the rows an import wrote gone again, with its row errors (None: every contact,
    django-import-export's too, which carry no operation), so that every measurement starts
    from the same table."""
    from django.db import connection

    from operations.models import RowError

    with connection.cursor() as cursor:
        if op_id is None:
            cursor.execute(f"DELETE FROM {TABLE}")
        else:
            cursor.execute(f"DELETE FROM {TABLE} WHERE import_operation = %s", [op_id])
            RowError.objects.filter(operation_id=op_id).delete()
        if connection.vendor == "postgresql":
            cursor.execute(f"VACUUM {TABLE}")


def stored_contacts(op_id: int | None) -> int:
    from contacts.models import Contact

    return Contact.objects.filter(import_operation=op_id).count() if op_id else Contact.objects.count()


def typed_import_once(h: Harness, worker, path: Path, rows: int) -> Measurement:
    """One import of `path` into contacts through the API by `worker`, claim to completed: its
    CPU (worker, backend) and the rows it rejected (`extra`); then its rows go (untimed)."""
    with h.measure_worker(worker, rows) as measurement:
        op_id, _ = h.started(path, target=TARGET)
        op = h.wait_state(op_id, "completed", "failed")
    if op.state != "completed":
        raise RuntimeError(f"typed import {op_id} failed: {op.error}")
    measurement.seconds = h.event_seconds(op_id, {"to_state": "running"}, {"to_state": "completed"})
    measurement.extra = {"rejected": op.lines_failed}
    stored = stored_contacts(op_id)
    assert stored + op.lines_failed == rows, f"{stored} stored + {op.lines_failed} rejected of {rows} rows"
    empty_contacts(h, op_id)
    return measurement


def rejected_counts(measurements: list[Measurement]) -> set[int]:
    return {m.extra["rejected"] for m in measurements}


# --- the targets ------------------------------------------------------------------------------


def typed_import(h: Harness) -> None:
    """Target 11: a small typed import on a fresh worker (its peak RSS); then the big file,
    alternated with the raw driver loop, on another fresh worker (its peak RSS after); then
    pauses at random instants of typed imports on it."""
    typed_files(h)
    first = h.start_worker()
    h.only(first)
    typed_import_once(h, first, h.typed_small, h.args.small_rows)
    worker_small = peak_rss_mib(first.pid)
    h.stop(first)

    worker = typed_worker(h)

    def raw_once() -> Measurement:
        scratch = h.scratch_operation()
        measurement = h.run_baseline("raw_typed_load", op=scratch.pk, path=str(h.typed_big), rows=h.args.rows)
        empty_contacts(h, scratch.pk)
        scratch.delete()
        return measurement

    try:
        ours, base = h.compare(
            "11. typed import, claim to completed",
            lambda: typed_import_once(h, worker, h.typed_big, h.args.rows),
            raw_once,
            baseline_name="raw driver loop, plain Python conversion, 1 transaction",
            goal=0.80,
        )
        ours_rejected, raw_rejected = rejected_counts(ours), rejected_counts(base)
        if len(ours_rejected | raw_rejected) != 1:
            raise AssertionError(f"rows rejected: ours {ours_rejected}, the raw loop's {raw_rejected}")
        h.rows[-1].ours += f"; {ours_rejected.pop():,} rows rejected"
        h.rows[-1].baseline += ", the same rows rejected"
        h.figures["typed one worker"] = sorted(m.rate for m in ours)[len(ours) // 2]
        worker_big = peak_rss_mib(worker.pid)
        h.add(
            Row(
                "11. peak RSS worker (typed import)",
                f"{worker_big:.1f} MiB",
                f"{worker_small:.1f} MiB with {h.args.small_rows:,} rows",
                wall_ratio=f"{worker_big - worker_small:+.1f} MiB",
                goal="<= 80 MiB, +-5 MiB",
                passed=worker_big <= 80 and abs(worker_big - worker_small) <= 5,
            )
        )
        seconds = h.args.rows / h.figures["typed one worker"]
        samples = pause_samples(h, lambda: h.started(h.typed_big, target=TARGET)[0], seconds)
        add_pause_row(h, "11. pause answered -> ack (typed import)", samples)
        empty_contacts(h)  # the imports that completed between pauses
    finally:
        h.continue_workers()


def typed_vs_import_export(h: Harness) -> None:
    """Target 12: the typed import of a file of --import-export-rows rows, next to
    django-import-export's `import_data` of the same file (3 ABBA at most: it is slow)."""
    typed_files(h)
    worker = typed_worker(h)
    rows = h.import_export_rows

    def import_export_once() -> Measurement:
        measurement = h.run_baseline("import_export_load", path=str(h.typed_import_export), rows=rows)
        assert stored_contacts(None) + measurement.extra["rejected"] == rows, "django-import-export lost rows"
        empty_contacts(h)
        return measurement

    try:
        ours, theirs = h.compare(
            f"12. typed import vs django-import-export, {rows:,} rows",
            lambda: typed_import_once(h, worker, h.typed_import_export, rows),
            import_export_once,
            baseline_name="django-import-export import_data (use_bulk)",
            goal=20.0,
            repeats=min(3, h.args.repeats),
        )
        h.rows[-1].ours += f"; {spread(sorted(rejected_counts(ours)))} rows rejected"
        h.rows[-1].baseline += f"; {spread(sorted(rejected_counts(theirs)))} rows rejected"
    finally:
        h.continue_workers()


TARGETS = [typed_import, typed_vs_import_export]
