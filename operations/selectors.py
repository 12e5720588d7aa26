"""Reads: progress figures derived from the checkpoint, and waiting for a worker's ack."""

import time

from django.conf import settings

from operations.models import Operation
from operations.operation_types import registry

State = Operation.State
WORKING_STATES = (State.RUNNING, State.PAUSING)


def percent_done(op: Operation) -> float | None:
    if op.state == State.COMPLETED:
        return 100.0
    if op.state == State.TERMINATED:
        return None
    percent = registry.get(op.op_type).percent_done(op)
    return None if percent is None else round(percent, 1)


def rows_per_second(op: Operation) -> float | None:
    """The worker's current speed; None when no worker is on it."""
    return op.rows_per_second if op.state in WORKING_STATES else None


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
