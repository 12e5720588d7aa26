"""What a worker says about itself for the dashboard (operations.heartbeats): cheap writes, at
most one beat and one sample every HEARTBEAT_SECONDS while it works, and the pruning."""

from datetime import timedelta

import pytest
from django.db.models import Sum
from django.utils import timezone

from operations import heartbeats, worker
from operations.heartbeats import HEARTBEAT_SECONDS, Heartbeat
from operations.models import Operation, ThroughputSample, WorkerProcess
from tests.support import csv_bytes, operation_in_state

pytestmark = pytest.mark.django_db
S = Operation.State


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_a_worker_starts_beats_and_stops(clock):
    beat = Heartbeat("w-1", clock=clock)
    beat.started()
    row = WorkerProcess.objects.get()
    assert (row.worker_id, row.operation_id) == ("w-1", None) and row.pid > 0 and row.host
    # The database's clock (SQLite's in milliseconds) may read the same for two quick beats: a
    # beat is seen by the minute it takes back.
    seen = row.last_seen - timedelta(minutes=1)
    WorkerProcess.objects.update(last_seen=seen)
    clock.now += HEARTBEAT_SECONDS - 1
    beat.idle()
    assert WorkerProcess.objects.get().last_seen == seen  # not yet: no write
    clock.now += 1
    beat.idle()
    assert WorkerProcess.objects.get().last_seen > seen
    beat.stopped()
    assert not WorkerProcess.objects.exists()


def test_while_it_works_it_samples_every_few_seconds_and_at_the_end(clock):
    op = operation_in_state(S.RUNNING)
    beat = Heartbeat("w-1", clock=clock)
    beat.started()
    beat.holding(op)
    assert WorkerProcess.objects.get().operation_id == op.pk
    clock.now += 1
    beat.progressed(op, 500)  # the first chunk: at once, for the dashboard
    assert list(ThroughputSample.objects.values_list("rows", "seconds")) == [(500, 1.0)]
    for _ in range(4):
        clock.now += 1
        beat.progressed(op, 500)
    assert ThroughputSample.objects.count() == 1  # within HEARTBEAT_SECONDS: nothing written
    clock.now += 1
    beat.progressed(op, 500)
    assert list(ThroughputSample.objects.values_list("rows", "seconds").order_by("id")) == [(500, 1.0), (2500, 5.0)]
    clock.now += 0.5
    beat.progressed(op, 100)
    beat.done(op)
    assert ThroughputSample.objects.aggregate(rows=Sum("rows"))["rows"] == 3100
    assert WorkerProcess.objects.get().operation_id is None


def test_a_worker_whose_row_was_pruned_writes_it_anew(clock):
    op = operation_in_state(S.RUNNING)
    beat = Heartbeat("w-1", clock=clock)
    beat.holding(op)
    assert WorkerProcess.objects.get().operation_id == op.pk


def test_prune_forgets_silent_workers_and_old_samples(clock):
    op = operation_in_state(S.COMPLETED)
    long_ago = timezone.now() - timezone.timedelta(seconds=heartbeats.FORGET_SECONDS + 60)
    WorkerProcess.objects.create(worker_id="gone", host="h", pid=1, started_at=long_ago, last_seen=long_ago)
    Heartbeat("alive", clock=clock).started()
    minute = heartbeats.current_minute()
    for age in (0, 60, heartbeats.SAMPLES_KEPT_SECONDS // 60 + 1):
        ThroughputSample.objects.create(minute=minute - age, rows=1, seconds=1, worker_id="w", operation=op)
    assert heartbeats.prune() == (1, 1)
    assert list(WorkerProcess.objects.values_list("worker_id", flat=True)) == ["alive"]
    assert ThroughputSample.objects.count() == 2


def test_the_worker_loop_reports_what_it_holds_and_every_row(start_upload, chunks, media_root):
    chunks.size = 40
    seen = []
    chunks.after_chunk = lambda n: seen.append(
        WorkerProcess.objects.filter(worker_id=worker.worker_id()).values_list("operation_id", flat=True).first()
    )
    op_id = start_upload(csv_bytes(200))
    worker.work_operation(op_id)
    assert Operation.objects.get(pk=op_id).state == S.COMPLETED
    assert seen and set(seen) == {op_id}  # while it worked, it held the operation
    assert WorkerProcess.objects.get(worker_id=worker.worker_id()).operation_id is None
    assert ThroughputSample.objects.filter(operation_id=op_id).aggregate(rows=Sum("rows"))["rows"] == 200
