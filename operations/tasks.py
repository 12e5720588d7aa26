"""The django-background-tasks adapter. Its Task row only wakes a worker up: the truth about an
operation (state, checkpoint, lease) lives in `Operation`, and the task carries nothing but the
operation's id. `OperationsConfig.ready()` makes `enqueue` the core's queue hook."""

from datetime import timedelta

from background_task import background
from background_task.models import CompletedTask
from django.utils import timezone


# The task's name is what queued rows in the database refer to: it stays as it was.
@background(name="operations.run_operation")
def work_operation_task(op_id: int) -> None:
    from operations import worker

    worker.work_operation(op_id)


def enqueue(op_id: int) -> None:
    work_operation_task(op_id)


def prune_task_history(*, days: float = 7.0) -> int:
    """django-background-tasks keeps a CompletedTask row for every run; keep a week of them."""
    cutoff = timezone.now() - timedelta(days=days)
    deleted, _ = CompletedTask.objects.filter(run_at__lt=cutoff).delete()
    return deleted
