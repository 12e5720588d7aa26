"""The queue as the core sees it: one hook that wakes a worker up for an operation.

The core imports no task library. `OperationsConfig.ready()` wires the hook to the
django-background-tasks task (`operations.tasks`); a test or another deployment may wire
another. The truth about an operation lives in `Operation`; a lost wake-up only delays it until
a worker's recovery sweep finds it queued (see `selectors.operations_stalled`).
"""

from collections.abc import Callable

from django.db import transaction

_enqueue: Callable[[int], None] | None = None


def set_enqueue(enqueue: Callable[[int], None]) -> None:
    global _enqueue
    _enqueue = enqueue


def enqueue_after_commit(op_id: int) -> None:
    """Wake a worker up for `op_id` once the current transaction commits.

    Robust: once the transition has committed, a failure to enqueue must neither undo the
    request's input nor turn its answer into an error; the recovery sweep takes it up.
    """
    if _enqueue is not None:
        transaction.on_commit(lambda: _enqueue(op_id), robust=True)
