"""What every command prints with: lines on standard output, messages on standard error, times
in the local zone. Counts, sizes and durations go through `long_task_shared.humanize`, the one
format of the client, `manage.py op_status` and the admin."""

import sys
from datetime import UTC, datetime


class UsageError(Exception):
    """Bad arguments or a file that cannot be read or written: exit 3."""


def out(text: str = "") -> None:
    print(text, flush=True)


def say_error(text: str) -> None:
    print(f"long-task: {text}", file=sys.stderr, flush=True)


def when(value: str | None) -> str:
    """An API timestamp in the local zone, to the second; `-` when there is none."""
    if not value:
        return "-"
    return datetime.fromisoformat(value).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def seconds_between(start: str | None, end: str | None) -> float | None:
    if not (start and end):
        return None
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def now_iso() -> str:
    """Now, as the API writes its timestamps (to compare with them)."""
    return datetime.now(UTC).isoformat()
