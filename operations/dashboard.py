"""The reads of the console's dashboard (SPEC §10): what runs now, counts by state, recent
failures, throughput over the last hour, and the workers with the operations they hold.

`dashboard_snapshot` reads it all in a fixed number of queries, whatever the number of
operations, workers, samples or row errors: each part is one bounded query. The throughput comes
from the samples the workers write as they commit chunks (operations.heartbeats), added up by
minute in the database.
"""

import time
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db.models import BooleanField, Case, ExpressionWrapper, IntegerField, Max, Q, Sum, Value, When
from django.db.models.functions import Now

from operations import access, heartbeats, selectors
from operations.models import Operation, ThroughputSample, WorkerProcess

State = Operation.State

CHART_MINUTES = 60
RUNNING_SHOWN = 20
FAILURES_SHOWN = 5
WORKERS_SHOWN = 50


@dataclass
class Dashboard:
    counts: dict[str, int]
    # Active operations (queued or worked), the worked ones first.
    running: list[Operation]
    failures: list[Operation]
    # Each with `operation` (what it said it works on), `silent` (not seen for a lease's time)
    # and `lease_expired` (its operation's lease ran out: stalled).
    workers: list[WorkerProcess]
    # Worked operations whose lease expired and that no listed worker says it holds.
    unheld_stalled: list[Operation]
    # (minute since the epoch, rows per second), the oldest first, CHART_MINUTES of them.
    throughput: list[tuple[int, float]] = field(default_factory=list)
    rows_last_hour: int = 0


def dashboard_snapshot(*, user) -> Dashboard:
    visible = Operation.objects.visible_to(user)
    workers = _workers()
    listed = {worker.worker_id for worker in workers}
    stalled = visible.worked().filter(Q(lease_expires_at__lt=Now()) | Q(lease_owner="")).order_by("id")
    throughput, total = _throughput(user)
    return Dashboard(
        counts=selectors.operation_counts(user=user),
        running=_running(visible),
        failures=list(visible.filter(state=State.FAILED).order_by("-updated_at", "-id")[:FAILURES_SHOWN]),
        workers=workers,
        unheld_stalled=[op for op in stalled[:WORKERS_SHOWN] if op.lease_owner not in listed],
        throughput=throughput,
        rows_last_hour=total,
    )


def _running(visible) -> list[Operation]:
    worked_first = Case(When(state__in=State.worked(), then=Value(0)), default=Value(1), output_field=IntegerField())
    active = visible.active().annotate(worked_first=worked_first)
    return list(active.order_by("worked_first", "-id")[:RUNNING_SHOWN])


def _workers() -> list[WorkerProcess]:
    silent_since = Now() - timedelta(seconds=settings.LONG_TASK_LEASE_SECONDS)
    flags = {
        "silent": ExpressionWrapper(Q(last_seen__lt=silent_since), output_field=BooleanField()),
        "lease_expired": ExpressionWrapper(Q(operation__lease_expires_at__lt=Now()), output_field=BooleanField()),
    }
    forgotten = Now() - timedelta(seconds=heartbeats.FORGET_SECONDS)
    rows = WorkerProcess.objects.filter(last_seen__gte=forgotten).select_related("operation").annotate(**flags)
    return list(rows.order_by("host", "pid", "worker_id")[:WORKERS_SHOWN])


def _throughput(user) -> tuple[list[tuple[int, float]], int]:
    """Rows per second in each of the last CHART_MINUTES minutes (the current one over the seconds
    it has lasted so far), and the rows of the whole hour."""
    now = time.time()
    current = int(now // 60)
    first = current - CHART_MINUTES + 1
    samples = ThroughputSample.objects.filter(minute__gte=first)
    if not access.sees_all(user):
        samples = samples.filter(operation__in=Operation.objects.visible_to(user))
    rows = samples.order_by().values("minute").annotate(rows=Sum("rows"), longest=Max("seconds"))
    by_minute = {row["minute"]: (row["rows"], row["longest"]) for row in rows}
    series = []
    for minute in range(first, current + 1):
        count, longest = by_minute.get(minute, (0, 0.0))
        seconds = 60.0 if minute < current else max(now - current * 60, longest, 1.0)
        series.append((minute, round(count / seconds, 1)))
    return series, sum(count for count, _ in by_minute.values())
