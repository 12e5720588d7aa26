"""The console's figures as text, one format for the server-rendered pages and the polled ones
alike: the pages and `live/` both build their text here, and console.js only copies it. The
number formats are long_task_shared.humanize's, which the command-line client uses too."""

from collections.abc import Iterable

from django.utils import timezone

from long_task_shared import humanize
from operations import access, selectors
from operations.models import Operation, OperationEvent
from operations.state_machine import allows

# The buttons of an operation's page: verb -> the transition that decides whether it is offered.
CONTROLS = {"pause": "pause", "resume": "resume", "terminate": "force_terminate"}
NOT_YOURS = "For its owner only"
# A failure's reason in a list's row (the whole of it: the operation's page).
REASON_CHARS = 120


def moment(at) -> str:
    """A time to the second, in the server's time zone."""
    return "-" if at is None else timezone.localtime(at).strftime("%Y-%m-%d %H:%M:%S")


def figures(op: Operation) -> dict[str, str]:
    """Every figure of an operation as text."""
    percent = selectors.percent_done(op)
    rate = selectors.rows_per_second(op)
    imported, failed = humanize.count(selectors.lines_imported(op)), humanize.count(op.lines_failed)
    counts = f"{imported} imported, {failed} rejected"
    if op.total_lines is not None:
        counts += f" of {humanize.count(op.total_lines)}"
    return {
        "state": op.state,
        "percent": "" if percent is None else f"{percent:.1f}%",
        "imported": imported,
        "failed": failed,
        "finished": humanize.count(op.lines_finished),
        "total": humanize.count(op.total_lines),
        "counts": counts,
        "rate": "-" if rate is None else f"{humanize.count(rate)} rows/s",
        "rate_number": humanize.count(rate),  # the list's column, headed rows/s
        "eta": humanize.duration(selectors.eta_seconds(op)),
        "started": moment(op.started_at),
        "finished_at": moment(op.finished_at),
        "updated": moment(op.updated_at),
        "created": moment(op.created_at),
        "age": age(op.created_at),
        "duration": humanize.duration(selectors.operation_run_record(op, []).duration_seconds),
        "reason": failure_reason(op),
        "file_title": f" \u00b7 {op.file_name}" if op.file_name else "",  # beside the page's title
    }


def age(at) -> str:
    """How long ago, in the one duration format ("3m05s ago")."""
    return humanize.ago(None if at is None else (timezone.now() - at).total_seconds())


def failure_reason(op: Operation) -> str:
    """Why a failed operation failed, short enough for a list's row ("" unless failed)."""
    if op.state != Operation.State.FAILED:
        return ""
    return humanize.shorten(op.error or "no reason recorded", REASON_CHARS)


def options_text(options: dict) -> str:
    """Options as words: `strict: no · target: contacts · mapping: Full Name → name`."""

    def value(item) -> str:
        if isinstance(item, bool):
            return "yes" if item else "no"
        if isinstance(item, dict):
            return ", ".join(f"{key} \u2192 {value(inner)}" for key, inner in item.items())
        if isinstance(item, list | tuple):
            return ", ".join(value(inner) for inner in item)
        return "-" if item is None or item == "" else str(item)

    return " \u00b7 ".join(f"{key}: {value(item)}" for key, item in (options or {}).items()) or "none"


def record_figures(op: Operation, events: Iterable[OperationEvent]) -> dict[str, str]:
    """The run as a whole: duration, time worked, average rate."""
    record = selectors.operation_run_record(op, events)
    average = record.average_rate
    return {
        "duration": humanize.duration(record.duration_seconds),
        "working": humanize.duration(record.working_seconds),
        "average": "-" if average is None else f"{humanize.count(average)} rows/s",
    }


def event_row(event: OperationEvent) -> dict[str, str]:
    """One line of an operation's history."""
    return {
        "at": moment(event.at),
        "actor": event.actor,
        "from_state": event.from_state,
        "to_state": event.to_state,
        "detail": event.detail,
    }


def verdict_rows(dry_run: dict | None) -> list[dict[str, str]] | None:
    """A dry run's rejected rows by kind of reason (its status's `dry_run`), the most frequent
    first (None: no dry run)."""
    if dry_run is None:
        return None
    by_kind = sorted(dry_run["rejected_by_reason"].items(), key=lambda item: (-item[1], item[0]))
    return [{"count": humanize.count(count), "kind": kind} for kind, count in by_kind]


def allowed_controls(op: Operation) -> dict[str, bool]:
    """Which buttons the state machine's table allows now (the services decide again on click),
    and whether a dry run's Import is (on a dry run's page only)."""
    allowed = {verb: allows(transition, op.state) for verb, transition in CONTROLS.items()}
    return {**allowed, "import": selectors.import_refusal(op) == ""}


def live_entry(op: Operation) -> dict:
    """What the pages poll for one operation: the status object, its figures as text, and
    whether it is still active and which controls apply."""
    return {
        **selectors.operation_status(op),
        "text": figures(op),
        "active": op.state in Operation.State.active(),
        "allowed": allowed_controls(op),
    }


def download_refusal(user, op: Operation) -> str:
    """Why `user` cannot download the operation's file now ("": they can), as the API's
    download would answer: no file (e.g. terminated), or not theirs to download."""
    return selectors.download_refusal(op) or ("" if access.can_download(user, op) else NOT_YOURS)
