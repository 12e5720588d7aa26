"""The requests people make (API, admin, command line): register, start, pause, resume,
terminate. Each locks the operation, lets the state machine decide, and wakes a worker up after
the commit when there is work to do. The type's input and options are the type's business:
these functions hand it the request's data and save what it returns.
"""

from collections.abc import Mapping

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from operations import queue
from operations.errors import BadInput, OperationError, QuotaExceeded
from operations.models import Operation
from operations.operation_types import registry
from operations.state_machine import Actor, allows, ensure_allowed, lock, record, transition

State = Operation.State


def operation_register(*, op_type: str, actor: Actor, data: Mapping) -> Operation:
    """Create an operation of a registered type, in state `registered`, with the options the
    type reads from `data` (it refuses bad ones)."""
    kind = registry.get(op_type)
    unknown = sorted(set(data) - {"op_type", "csrfmiddlewaretoken"} - kind.option_names)
    if unknown:
        known = ", ".join(sorted(kind.option_names)) or "none"
        raise BadInput(f"{kind.name} has no option {', '.join(unknown)} (its options: {known})")
    options = kind.parse_options(data, actor=actor)
    waiting = Operation.objects.filter(owner=actor.owner, state=State.REGISTERED).count()
    if waiting >= settings.LONG_TASK_MAX_REGISTERED:
        raise QuotaExceeded(
            f"You have {waiting} registered operations that never started "
            f"(at most {settings.LONG_TASK_MAX_REGISTERED}): start or terminate some first"
        )
    with transaction.atomic():
        op = Operation.objects.create(op_type=kind.name, owner=actor.owner, options=options)
        record(op, from_state="", actor=actor, detail="registered")
    return op


def operation_start(*, op_id: int, actor: Actor, data: Mapping, files: Mapping) -> tuple[Operation, bool]:
    """Start a registered operation with its input, or resume a paused or failed one (the
    seed's /upload/ does both). Returns the operation and whether it was a resume.

    The decision is taken under the row lock. A start stores its input (the slow part, e.g. a
    file) after the lock is released, then takes the lock again for the transition; if the
    operation moved on meanwhile, the stored input is discarded and the start refused.
    """
    with transaction.atomic():
        op = lock(op_id, user=actor.user)
        if allows("resume", op.state):
            return _resume(op, actor=actor, data=data, files=files), True
        ensure_allowed("start", op)
    kind = registry.get(op.op_type)
    try:
        fields = kind.prepare_input(op, data=data, files=files)
    except OperationError as refusal:
        if refusal.status_code < 500:  # the input's fault, not the server's (a store away: 503)
            record_input_refusal(op_id, actor=actor, refusal=refusal)
        raise
    try:
        with transaction.atomic():
            op = lock(op_id, user=actor.user)
            transition(op, "start", actor=actor, fields={**fields, "started_at": timezone.now()})
            queue.enqueue_after_commit(op.pk)
    except Exception:
        kind.discard_input(fields)
        raise
    return op, False


def record_input_refusal(op_id: int, *, actor: Actor, refusal: OperationError) -> None:
    """Say in the operation's history why its input was refused (a client then withdraws it,
    and its history would otherwise not say why it ended); nothing once it has started."""
    with transaction.atomic():
        op = lock(op_id, user=actor.user)
        if op.state == State.REGISTERED:
            record(op, from_state=op.state, actor=actor, detail=f"input refused: {refusal.message}")


def operation_import(*, op_id: int, actor: Actor) -> Operation:
    """Start the real import of what a completed dry run checked, from the file it stored: a new
    operation of its type, with its options, queued at once. The file is handed over in the
    same transaction (the import owns it from then on), so that it is imported once."""
    with transaction.atomic():
        checked = lock(op_id, user=actor.user)
        kind = registry.get(checked.op_type)
        options, fields = kind.import_checked(checked)
        op = Operation.objects.create(op_type=kind.name, owner=checked.owner, options=options)
        record(op, from_state="", actor=actor, detail=f"registered to import what operation {checked.pk} checked")
        transition(op, "start", actor=actor, fields={**fields, "started_at": timezone.now()})
        handed = kind.hand_over_input(checked, to=op)
        Operation.objects.filter(pk=checked.pk).update(**handed, updated_at=timezone.now())
        record(checked, from_state=checked.state, actor=actor, detail=f"stored file handed to operation {op.pk}")
        queue.enqueue_after_commit(op.pk)
    return op


def operation_pause(*, op_id: int, actor: Actor) -> Operation:
    """Ask to pause. A queued operation pauses at once; a running one is `pausing` until the
    worker acknowledges at its next chunk boundary (no chunk commits after this returns)."""
    with transaction.atomic():
        return transition(lock(op_id, user=actor.user), "pause", actor=actor)


def operation_resume(
    *, op_id: int, actor: Actor, data: Mapping | None = None, files: Mapping | None = None
) -> Operation:
    """Queue a paused or failed operation again; it continues from its checkpoint. The type may
    refuse a request that disagrees with its input (e.g. a re-sent file that differs)."""
    with transaction.atomic():
        return _resume(lock(op_id, user=actor.user), actor=actor, data=data or {}, files=files or {})


def _resume(op: Operation, *, actor: Actor, data: Mapping, files: Mapping) -> Operation:
    changes = registry.get(op.op_type).check_resume(op, data=data, files=files) if allows("resume", op.state) else {}
    transition(op, "resume", actor=actor, fields={"error": "", **changes})
    queue.enqueue_after_commit(op.pk)
    return op


def operation_terminate(*, op_id: int, actor: Actor, force: bool = False) -> Operation:
    """Ask to terminate: a worker then deletes everything the operation wrote and its file.

    Without `force`, a queued or running operation must be paused first. An operation that
    never started has nothing to roll back and is terminated at once.
    """
    with transaction.atomic():
        op = lock(op_id, user=actor.user)
        never_started = op.state == State.REGISTERED
        transition(op, "force_terminate" if force else "terminate", actor=actor)
        if never_started:
            fields = {"finished_at": timezone.now()}
            transition(op, "finish_terminate", actor=actor, detail="nothing to roll back", fields=fields)
        else:
            queue.enqueue_after_commit(op.pk)
    return op
