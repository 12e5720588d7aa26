"""Progress on the command line (SPEC §10): `manage.py op_status [op_id ...] [--state S] [--watch N]`,
and `manage.py op_status ID --follow [--interval N]`, which exits when the operation stops moving,
with the exit codes of the `long-task` client. Counts and durations in `long_task_shared.humanize`'s
format, the one the client and the admin show."""

import time
from datetime import datetime

from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections
from django.utils import timezone

from long_task_shared import humanize, outcome
from operations import selectors
from operations.models import Operation

COLUMNS = [
    *["id", "type", "state", "owner", "percent", "finished", "failed", "rows/s", "eta"],
    *["created", "ran", "file", "reason"],
]
# Numbers read better right-aligned.
RIGHT_ALIGNED = {"id", "percent", "finished", "failed", "rows/s", "eta", "created", "ran"}
# What changes with the clock alone: a follow prints a plain line only when the others change.
CLOCK_COLUMNS = {"created", "ran"}
# A row cuts a long file name and a failure's reason (the admin's page shows them whole).
FILE_CHARS = 30
REASON_CHARS = 60
CLEAR_SCREEN = "\033[H\033[2J"


def format_time(moment: datetime | None) -> str:
    return "-" if moment is None else timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S")


def operation_row(op: Operation) -> list[str]:
    percent, rate = selectors.percent_done(op), selectors.rows_per_second(op)
    now = timezone.now()
    reason = (
        humanize.shorten(op.error or "no reason recorded", REASON_CHARS) if op.state == Operation.State.FAILED else ""
    )
    return [
        str(op.pk),
        op.op_type,
        op.state,
        op.owner.get_username() if op.owner else "-",
        "-" if percent is None else f"{percent:.1f}%",
        humanize.count(op.lines_finished),
        humanize.count(op.lines_failed),
        humanize.count(rate),
        humanize.duration(selectors.eta_seconds(op)),
        humanize.ago((now - op.created_at).total_seconds()),
        humanize.duration(selectors.duration_seconds(op, now=now)),
        humanize.shorten(op.file_name, FILE_CHARS) or "-",
        reason,
    ]


def without_clock(row: list[str]) -> list[str]:
    return [cell for name, cell in zip(COLUMNS, row, strict=True) if name not in CLOCK_COLUMNS]


def render_table(rows: list[list[str]]) -> str:
    widths = [max(len(cell) for cell in column) for column in zip(COLUMNS, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            cell.rjust(width) if name in RIGHT_ALIGNED else cell.ljust(width)
            for name, cell, width in zip(COLUMNS, cells, widths, strict=True)
        ).rstrip()

    return "\n".join([line(COLUMNS), *(line(row) for row in rows)])


class Command(BaseCommand):
    help = (
        "Show the progress of operations (the most recent ones, or those given by id). With --follow ID, "
        "follow one until it stops moving; exit 0 completed, 1 failed, 2 paused or terminated, "
        "3 unknown operation, 130 Ctrl-C."
    )

    def add_arguments(self, parser):
        parser.add_argument("op_ids", nargs="*", type=int, metavar="op_id", help="operations to show (default: all)")
        parser.add_argument(
            "--state",
            action="append",
            choices=Operation.State.values,
            help="only operations in this state (repeatable)",
        )
        parser.add_argument("--limit", type=int, default=20, help="show at most this many (default 20)")
        parser.add_argument("--watch", type=float, metavar="SECONDS", help="refresh every SECONDS until Ctrl-C")
        parser.add_argument(
            "--follow",
            action="store_true",
            help="follow one operation until it is completed (exit 0), failed (1), paused or terminated (2)",
        )
        parser.add_argument(
            "--interval", type=float, metavar="SECONDS", help="with --follow: refresh every SECONDS (default 1)"
        )

    def handle(self, *args, **options):
        if options["follow"]:
            self.follow(options)
            return
        if options["interval"] is not None:
            raise CommandError("--interval goes with --follow (--watch takes its own SECONDS)")
        if options["watch"] is None:
            missing = self.show(options)
            if missing:
                raise CommandError(f"No operation with id {', '.join(map(str, missing))}")
            return
        interval = max(options["watch"], 0.1)
        try:
            while True:
                # A long-lived command outside the request cycle: drop a connection that broke.
                close_old_connections()
                if self.stdout.isatty():
                    self.stdout.write(CLEAR_SCREEN, ending="")
                self.stdout.write(f"{format_time(timezone.now())}  (every {interval:g}s, Ctrl-C stops)")
                self.show(options)
                self.stdout.write("")
                self.stdout.flush()
                time.sleep(interval)
        except KeyboardInterrupt:
            self.stdout.write("")

    def follow(self, options) -> None:
        """Print the operation's row at every refresh (redrawn on a terminal, one line each
        otherwise) until it stops moving; exit with the client's code for where it stopped."""
        if len(options["op_ids"]) != 1 or options["watch"] is not None or options["state"]:
            raise CommandError(
                "--follow takes one operation id (and neither --watch nor --state)", returncode=outcome.USAGE
            )
        op_id = options["op_ids"][0]
        interval = max(options["interval"] if options["interval"] is not None else 1.0, 0.1)
        tty = self.stdout.isatty()
        shown = None
        try:
            while True:
                # A long-lived command outside the request cycle: drop a connection that broke.
                close_old_connections()
                op = Operation.objects.select_related("owner").filter(pk=op_id).first()
                if op is None:
                    raise CommandError(f"No operation with id {op_id}", returncode=outcome.USAGE)
                row = operation_row(op)
                if tty:
                    self.stdout.write(CLEAR_SCREEN, ending="")
                    self.stdout.write(f"{format_time(timezone.now())}  (every {interval:g}s, Ctrl-C stops)")
                    self.stdout.write(render_table([row]))
                elif without_clock(row) != shown:  # plain lines: the header once, then a row when it changed
                    lines = render_table([row]).splitlines()
                    self.stdout.write("\n".join(lines if shown is None else lines[-1:]))
                    shown = without_clock(row)
                self.stdout.flush()
                code = outcome.exit_code(op.state)
                if code is not None:
                    if code != outcome.COMPLETED:
                        raise SystemExit(code)
                    return
                time.sleep(interval)
        except KeyboardInterrupt:
            self.stdout.write("")
            raise SystemExit(outcome.INTERRUPTED) from None

    def show(self, options) -> list[int]:
        """Print the table; return the requested ids that do not exist."""
        queryset = Operation.objects.select_related("owner").order_by("-id")
        if options["op_ids"]:
            queryset = queryset.filter(pk__in=options["op_ids"])
        if options["state"]:
            queryset = queryset.filter(state__in=options["state"])
        total = queryset.count()
        operations = list(queryset[: max(options["limit"], 0)])
        if operations:
            self.stdout.write(render_table([operation_row(op) for op in operations]))
        else:
            self.stdout.write("No operations.")
        if total > len(operations):
            shown = f"{humanize.count(len(operations))} of {humanize.count(total)}"
            self.stdout.write(f"({shown} shown; --limit shows more)")
        if not options["op_ids"]:
            return []
        existing = set(Operation.objects.filter(pk__in=options["op_ids"]).values_list("pk", flat=True))
        missing = [op_id for op_id in options["op_ids"] if op_id not in existing]
        if missing and options["watch"] is not None:
            self.stderr.write(f"No operation with id {', '.join(map(str, missing))}")
        return missing
