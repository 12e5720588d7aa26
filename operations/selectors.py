"""Every read: the operations a user may see, those that need a worker, the status object and
its progress figures, and waiting for a worker's acknowledgement."""

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.db.models import Count, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce, Now
from django.utils import timezone

from operations import access
from operations.compiled_query import CompiledQuery
from operations.errors import NotFound
from operations.models import Operation, OperationEvent, RowError
from operations.operation_types import registry
from operations.tus import services as tus

State = Operation.State


_OPERATION_BY_ID = CompiledQuery(lambda op_id: Operation.objects.filter(pk=op_id))


def operation_get(*, op_id: int, user) -> Operation:
    """The operation if `user` may see it, else NotFound (a stranger's looks like a missing one)."""
    op = _OPERATION_BY_ID.first(op_id)
    if op is None or not access.can_see(user, op):
        raise NotFound()
    return op


def operation_counts(*, user) -> dict[str, int]:
    """How many of the operations `user` may see are in each state, every state named (one query)."""
    counts = dict(Operation.objects.visible_to(user).order_by().values_list("state").annotate(n=Count("pk")))
    return {state: counts.get(state, 0) for state in State.values}


def with_row_error_count(queryset):
    """`row_error_count` on each operation, read in the same statement as its counters, so that
    the two agree while a worker commits chunks (two queries could straddle a commit)."""
    count = RowError.objects.filter(operation=OuterRef("pk")).order_by().values("operation")
    count = count.annotate(n=Count("pk")).values("n")
    return queryset.annotate(row_error_count=Coalesce(Subquery(count), 0))


def download_refusal(op: Operation) -> str:
    """Why the operation's file cannot be downloaded now ("": it can), as its type says."""
    return registry.get(op.op_type).download_refusal(op)


def import_refusal(op: Operation) -> str | None:
    """None: `op` is no dry run; "": what it checked can be imported now; otherwise why not."""
    return registry.get(op.op_type).import_refusal(op)


def input_preview(
    *, op_type: str, data: bytes, complete: bool, max_rows: int = 20, options: Mapping | None = None
) -> dict | None:
    """A dry run of a start's input: what the type would make of its first rows (None: the
    type has none). Reads only `data`; writes nothing."""
    return registry.get(op_type).preview(data, complete=complete, max_rows=max_rows, options=options)


def operations_stalled(*, limit: int = 20) -> list[int]:
    """Ids of operations that need a worker and have none: a worked state with an expired
    lease or none, or queued for longer than a lease (their wake-up was lost)."""
    lease = timedelta(seconds=settings.LONG_TASK_LEASE_SECONDS)
    stalled = Operation.objects.filter(
        Q(state__in=State.worked(), lease_expires_at__lt=Now())
        | Q(state__in=State.worked(), lease_owner="")
        | Q(state=State.QUEUED, updated_at__lt=Now() - lease)
    )
    return list(stalled.order_by("id").values_list("id", flat=True)[:limit])


def operation_status(op: Operation) -> dict:
    """The status object of SPEC §5 (also the REST detail). A plain dict: this is the hot path
    of clients polling for progress (api/serializers.py documents the same fields)."""
    status = {
        "op_id": op.pk,
        "op_type": op.op_type,
        "state": op.state,
        "lines_finished": op.lines_finished,
        "is_finished": op.state == State.COMPLETED,
        "is_paused": op.state == State.PAUSED,
        "is_terminated": op.state == State.TERMINATED,
        "lines_failed": op.lines_failed,
        "total_lines": op.total_lines,
        "percent": percent_done(op),
        "rows_per_second": rows_per_second(op),
        "eta_seconds": eta_seconds(op),
        "error": op.error,
        "created_at": op.created_at,
        "started_at": op.started_at,
        "finished_at": op.finished_at,
        "updated_at": op.updated_at,
        **registry.get(op.op_type).status_fields(op),
    }
    if waits_for_upload(op):
        # Its file is still arriving (a resumable upload): how far it has come.
        attached = getattr(op, "upload_progress", _NOT_ATTACHED)
        status["upload"] = tus.upload_progress(op.options["upload"]) if attached is _NOT_ATTACHED else attached
    return status


_NOT_ATTACHED = object()


def waits_for_upload(op: Operation) -> bool:
    return op.state == State.REGISTERED and bool(op.options.get("upload"))


def attach_upload_progress(ops: Iterable[Operation]) -> None:
    """Read the upload progress of every operation in `ops` whose file is still arriving in one
    query, so that a list of statuses costs no query per operation."""
    waiting = [op for op in ops if waits_for_upload(op)]
    progress = tus.uploads_progress([op.options["upload"] for op in waiting])
    for op in waiting:
        op.upload_progress = progress.get(op.options["upload"])


def operation_list_entry(op: Operation) -> dict:
    """An operation in a list (the REST list, `long-task list`): its status object and what
    tells it apart from the others, its file's name and how long it ran (start to finish, or
    to now while it is unfinished); a failed one's reason is the status object's `error`."""
    return {
        **operation_status(op),
        "file_name": op.file_name,
        "duration_seconds": duration_seconds(op),
    }


def duration_seconds(op: Operation, *, now: datetime | None = None) -> float | None:
    """Wall time from its start to its finish (to `now` until it finishes); None before it starts."""
    if op.started_at is None:
        return None
    end = op.finished_at or now or timezone.now()
    return round(max((end - op.started_at).total_seconds(), 0.0), 1)


def percent_done(op: Operation) -> float | None:
    if op.state == State.COMPLETED:
        return 100.0
    if op.state == State.TERMINATED:
        return None
    percent = registry.get(op.op_type).percent_done(op)
    return None if percent is None else round(percent, 1)


def rows_per_second(op: Operation) -> float | None:
    """The worker's current speed; None when no worker is on it."""
    return op.rows_per_second if op.state in State.moving() else None


def eta_seconds(op: Operation) -> float | None:
    percent, rate = percent_done(op), rows_per_second(op)
    if not percent or not rate or not op.lines_finished:
        return None
    remaining_rows = op.lines_finished * (100.0 - percent) / percent
    return round(remaining_rows / rate, 1)


def operation_wait(op: Operation, *, until: set[str], seconds: float) -> Operation:
    """Poll until the operation reaches one of `until` or `seconds` pass (bounded by
    LONG_TASK_MAX_WAIT_SECONDS); return its latest version."""
    deadline = time.monotonic() + min(max(seconds, 0.0), settings.LONG_TASK_MAX_WAIT_SECONDS)
    while op.state not in until and time.monotonic() < deadline:
        time.sleep(0.01)
        op.refresh_from_db()
    return op


def status_etag(op: Operation) -> str:
    """A version of the status object: it changes whenever the operation's row does (every
    transition and checkpoint sets `updated_at`)."""
    return f'"{op.pk}-{op.updated_at.timestamp():.6f}-{op.state}"'


def wait_seconds(seconds: float) -> float:
    """A long poll's `wait_for_change`, bounded by LONG_TASK_MAX_WAIT_SECONDS."""
    return min(max(seconds, 0.0), settings.LONG_TASK_MAX_WAIT_SECONDS)


def changes_are_notified() -> bool:
    """Whether a change of an operation's row wakes a long poll of this request's connection
    (api/notifications.py): on PostgreSQL, unless the request runs in a transaction, whose own
    changes are told to listeners only when it commits (the tests' transactions); else a long
    poll reads the row again every so often."""
    return connection.vendor == "postgresql" and not connection.in_atomic_block


def operation_read_again(op: Operation) -> Operation:
    """The operation's row as it is now (who may see it does not change), for a long poll that
    waits for a change (api/waiting.py). The compiled read: a follower's request reads the row
    several times, and Django's refresh_from_db built its SQL each time, which was most of what
    a long poll cost over a plain status request."""
    fresh = _OPERATION_BY_ID.first(op.pk)
    if fresh is None:
        raise NotFound()
    return fresh


def lines_imported(op: Operation) -> int:
    """Rows done and accepted: finished minus failed."""
    return op.lines_finished - op.lines_failed


@dataclass(frozen=True)
class RunRecord:
    """The figures of a run as a whole, from its events: wall time since the start, the time a
    worker spent on it (pauses and queueing excluded) and the average rate over that time."""

    duration_seconds: float | None
    working_seconds: float | None
    average_rate: float | None


def operation_run_record(op: Operation, events: Iterable[OperationEvent], *, now: datetime | None = None) -> RunRecord:
    """`events` are the operation's, in order. Until it finishes, the times run to `now`."""
    now = now or timezone.now()
    if op.started_at is None:
        return RunRecord(None, None, None)
    end = op.finished_at or now
    working, since = 0.0, None
    for event in events:
        moving = event.to_state in State.moving()
        if moving and since is None:
            since = event.at
        elif not moving and since is not None:
            working += (event.at - since).total_seconds()
            since = None
    if since is not None:
        working += (end - since).total_seconds()
    working = max(working, 0.0)
    rate = op.lines_finished / working if working > 0 and op.lines_finished else None
    return RunRecord(max((end - op.started_at).total_seconds(), 0.0), working, rate)
