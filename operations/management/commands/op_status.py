"""Progress on the command line (SPEC §10): `manage.py op_status [op_id ...] [--state S] [--watch N]`."""

import time
from datetime import datetime

from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections
from django.utils import timezone

from operations import selectors
from operations.models import Operation

COLUMNS = ["id", "type", "state", "owner", "percent", "finished", "failed", "rows/s", "eta", "updated"]
# Numbers read better right-aligned.
RIGHT_ALIGNED = {"id", "percent", "finished", "failed", "rows/s", "eta"}
CLEAR_SCREEN = "\033[H\033[2J"


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def format_time(moment: datetime | None) -> str:
    return "-" if moment is None else timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S")


def operation_row(op: Operation) -> list[str]:
    percent, rate = selectors.percent_done(op), selectors.rows_per_second(op)
    return [
        str(op.pk),
        op.op_type,
        op.state,
        op.owner.get_username() if op.owner else "-",
        "-" if percent is None else f"{percent:.1f}%",
        str(op.lines_finished),
        str(op.lines_failed),
        "-" if rate is None else f"{rate:.0f}",
        format_duration(selectors.eta_seconds(op)),
        format_time(op.updated_at),
    ]


def render_table(rows: list[list[str]]) -> str:
    widths = [max(len(cell) for cell in column) for column in zip(COLUMNS, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            cell.rjust(width) if name in RIGHT_ALIGNED else cell.ljust(width)
            for name, cell, width in zip(COLUMNS, cells, widths, strict=True)
        ).rstrip()

    return "\n".join([line(COLUMNS), *(line(row) for row in rows)])


class Command(BaseCommand):
    help = "Show the progress of operations (the most recent ones, or those given by id)."

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

    def handle(self, *args, **options):
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
            self.stdout.write(f"({len(operations)} of {total} shown; --limit shows more)")
        if not options["op_ids"]:
            return []
        existing = set(Operation.objects.filter(pk__in=options["op_ids"]).values_list("pk", flat=True))
        missing = [op_id for op_id in options["op_ids"] if op_id not in existing]
        if missing and options["watch"] is not None:
            self.stderr.write(f"No operation with id {', '.join(map(str, missing))}")
        return missing
