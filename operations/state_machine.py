"""The state machine (SPEC §3): the one place that writes `Operation.state` and its lease.

Every verb locks the operation's row, checks the transition against `TRANSITIONS`, writes with
`update_fields` and records an `OperationEvent`, all in one transaction. Requests (pause,
terminate) are kept apart from acknowledgements (paused, terminated): only a worker that holds
the lease writes the latter, after it has acted.

Locks are `FOR NO KEY UPDATE` on PostgreSQL: inserting a row that references the operation
takes `FOR KEY SHARE` on it, which `FOR UPDATE` would wait for, so a pause would wait for the
chunk in flight. On SQLite every transaction begins IMMEDIATE, which serialises writers.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import BooleanField, ExpressionWrapper, Q
from django.db.models.expressions import CombinedExpression
from django.db.models.functions import Now
from django.utils import timezone

from operations import tasks
from operations.errors import BadInput, Conflict, LeaseLost, NotFound
from operations.models import Operation, OperationEvent
from operations.operation_types import registry

State = Operation.State

_TERMINATE = {State.REGISTERED: State.TERMINATING, State.PAUSED: State.TERMINATING, State.FAILED: State.TERMINATING}

# verb -> {from state: to state}. Anything not listed is refused with a 409.
TRANSITIONS: dict[str, dict[str, str]] = {
    # Requests, made through the API or the admin.
    "start": {State.REGISTERED: State.QUEUED},
    "pause": {State.QUEUED: State.PAUSED, State.RUNNING: State.PAUSING},
    "resume": {State.PAUSED: State.QUEUED, State.FAILED: State.QUEUED},
    "terminate": _TERMINATE,
    "force_terminate": {
        **_TERMINATE,
        State.QUEUED: State.TERMINATING,
        State.RUNNING: State.TERMINATING,
        State.PAUSING: State.TERMINATING,
    },
    # Acknowledgements, made by the worker that holds the lease.
    "claim": {State.QUEUED: State.RUNNING},
    "ack_pause": {State.PAUSING: State.PAUSED},
    "complete": {State.RUNNING: State.COMPLETED},
    "fail": {State.RUNNING: State.FAILED, State.PAUSING: State.FAILED},
    "requeue": {State.RUNNING: State.QUEUED},
    "finish_terminate": {State.TERMINATING: State.TERMINATED},
}

# States in which a worker (holding a live lease) is doing the operation's work.
WORKED_STATES = (State.RUNNING, State.PAUSING, State.TERMINATING)


def refusal_message(verb: str, op: Operation) -> str:
    """The 409 message of SPEC §5 for `verb` in the operation's current state."""
    kind, state = op.op_type, op.state
    if verb in ("terminate", "force_terminate") and state in (State.QUEUED, State.RUNNING, State.PAUSING):
        return "Pause the operation"
    if verb == "pause" and state == State.PAUSING:
        return f"{kind} already paused"
    by_state = {
        State.REGISTERED: f"{kind} not started",
        State.QUEUED: f"{kind} already running",
        State.RUNNING: f"{kind} already running",
        State.PAUSING: f"{kind} already running",
        State.PAUSED: f"{kind} already paused",
        State.COMPLETED: f"{kind} already finished",
        State.FAILED: f"{kind} failed: resume or terminate it",
        State.TERMINATING: f"{kind} already terminated",
        State.TERMINATED: f"{kind} already terminated",
    }
    return by_state[state]


@dataclass(frozen=True)
class Actor:
    """Who asks for a transition. A request's actor carries its user (possibly anonymous),
    which limits what it may see; a worker's carries none and sees everything."""

    label: str
    user: object | None = None

    @classmethod
    def for_user(cls, user) -> "Actor":
        if not user.is_authenticated:
            return cls("anonymous", user)
        return cls(f"user:{user.get_username()}", user)

    @property
    def owner(self):
        """The user who owns what this actor creates (None: anonymous or system)."""
        return self.user if self.user is not None and self.user.is_authenticated else None

    @classmethod
    def for_worker(cls, worker_id: str) -> "Actor":
        return cls(f"worker:{worker_id}")


def _lock(op_id: int, *, user=None) -> Operation:
    queryset = Operation.objects.select_for_update(no_key=True)
    if user is not None:
        queryset = queryset.visible_to(user)
    try:
        return queryset.get(pk=op_id)
    except Operation.DoesNotExist:
        raise NotFound() from None


def _record(op: Operation, *, from_state: str, actor: Actor, detail: str = "") -> None:
    OperationEvent.objects.create(
        operation=op, actor=actor.label, from_state=from_state, to_state=op.state, detail=detail
    )


def _transition(op: Operation, verb: str, *, actor: Actor, detail: str = "", fields: dict | None = None) -> Operation:
    """Validate `verb` on the locked `op`, apply it with `fields`, record the event."""
    target = TRANSITIONS[verb].get(op.state)
    if target is None:
        raise Conflict(refusal_message(verb, op))
    from_state = op.state
    changes = {**(fields or {}), "state": target, "updated_at": timezone.now()}
    if target not in WORKED_STATES:
        # Nobody works on an operation in the other states: drop the lease.
        changes.setdefault("lease_owner", "")
        changes.setdefault("lease_expires_at", None)
    for name, value in changes.items():
        setattr(op, name, value)
    op.save(update_fields=list(changes))
    _record(op, from_state=from_state, actor=actor, detail=detail)
    return op


def _enqueue_after_commit(op_id: int) -> None:
    # Robust: once the transition has committed, a failure to enqueue must neither undo the
    # request's input nor turn its answer into an error; the worker's recovery sweep takes up a
    # queued operation whose task never came.
    transaction.on_commit(lambda: tasks.run_operation(op_id), robust=True)


def _lease_until() -> CombinedExpression:
    """A lease's expiry, by the database's clock: workers on different machines never compare
    their own clocks with each other's."""
    return Now() + timedelta(seconds=settings.LONG_TASK_LEASE_SECONDS)


def _set_lease(op: Operation, *, owner: str, actor: Actor, detail: str) -> None:
    """Give the lease to `owner` ("" to nobody) without a change of state, and record it."""
    op.lease_owner = owner
    op.lease_expires_at = _lease_until() if owner else None
    op.save(update_fields=["lease_owner", "lease_expires_at", "updated_at"])
    _record(op, from_state=op.state, actor=actor, detail=detail)


# --- Requests (API, admin) -----------------------------------------------------------------


def operation_register(*, op_type: str, actor: Actor, options: dict | None = None) -> Operation:
    """Create an operation of a registered type, in state `registered`."""
    if op_type not in registry.names():
        known = ", ".join(registry.names())
        raise BadInput(f"Unknown op_type '{op_type}'. Known types: {known}")
    with transaction.atomic():
        op = Operation.objects.create(op_type=op_type, owner=actor.owner, options=options or {})
        _record(op, from_state="", actor=actor, detail="registered")
    return op


def operation_start(*, op_id: int, actor: Actor, prepare: Callable[[Operation], dict]) -> Operation:
    """Start a registered operation with the input that `prepare` stores for it.

    `prepare` does the slow part (storing an upload) outside the row lock and returns the
    fields to save; if the operation moved on meanwhile, the type's `discard_input` undoes it.
    """
    op = get_visible(op_id=op_id, user=actor.user)
    if op.state != State.REGISTERED:
        raise Conflict(refusal_message("start", op))
    fields = prepare(op)
    try:
        with transaction.atomic():
            op = _lock(op_id, user=actor.user)
            fields["started_at"] = timezone.now()
            _transition(op, "start", actor=actor, fields=fields)
            _enqueue_after_commit(op.pk)
    except Exception:
        registry.get(op.op_type).discard_input(fields)
        raise
    return op


def operation_pause(*, op_id: int, actor: Actor) -> Operation:
    """Ask to pause. A queued operation pauses at once; a running one is `pausing` until the
    worker acknowledges at its next chunk boundary (no chunk commits after this returns)."""
    with transaction.atomic():
        op = _lock(op_id, user=actor.user)
        return _transition(op, "pause", actor=actor)


def operation_resume(*, op_id: int, actor: Actor, check: Callable[[Operation], dict] | None = None) -> Operation:
    """Queue a paused or failed operation again; it continues from its checkpoint.

    `check` may refuse the resume (e.g. a re-sent file that differs from the stored one) and
    returns the fields the resume changes besides the state (e.g. options).
    """
    with transaction.atomic():
        op = _lock(op_id, user=actor.user)
        changes = check(op) if op.state in TRANSITIONS["resume"] and check is not None else {}
        _transition(op, "resume", actor=actor, fields={"error": "", **changes})
        _enqueue_after_commit(op.pk)
    return op


def operation_terminate(*, op_id: int, actor: Actor, force: bool = False) -> Operation:
    """Ask to terminate: a worker then deletes everything the operation wrote and its file.

    Without `force`, a queued or running operation must be paused first. An operation that
    never started has nothing to roll back and is terminated at once.
    """
    with transaction.atomic():
        op = _lock(op_id, user=actor.user)
        never_started = op.state == State.REGISTERED
        _transition(op, "force_terminate" if force else "terminate", actor=actor)
        if never_started:
            _transition(
                op,
                "finish_terminate",
                actor=actor,
                detail="nothing to roll back",
                fields={"finished_at": timezone.now()},
            )
        else:
            _enqueue_after_commit(op.pk)
    return op


def get_visible(*, op_id: int, user) -> Operation:
    """The operation if `user` may see it, else NotFound (a stranger's looks like a missing one)."""
    try:
        return Operation.objects.visible_to(user).get(pk=op_id)
    except Operation.DoesNotExist:
        raise NotFound() from None


# --- Acknowledgements (the worker) ---------------------------------------------------------


def operation_claim(*, op_id: int, worker_id: str) -> Operation | None:
    """Take the lease on an operation that needs a worker, or return None.

    A queued operation becomes running. One in a worked state whose lease expired (its worker
    died or lost the database) is taken over where its checkpoint says. Anything else (held by a
    live worker, paused, finished) is left alone: this compare-and-set is what keeps one worker
    per operation (I5).
    """
    actor = Actor.for_worker(worker_id)
    with transaction.atomic():
        lease_expired = ExpressionWrapper(Q(lease_expires_at__lt=Now()), output_field=BooleanField())
        try:
            op = Operation.objects.select_for_update(no_key=True).annotate(lease_expired=lease_expired).get(pk=op_id)
        except Operation.DoesNotExist:
            return None
        if op.state == State.QUEUED:
            lease = {"lease_owner": worker_id, "lease_expires_at": _lease_until()}
            _transition(op, "claim", actor=actor, detail="claimed", fields=lease)
        elif op.state in WORKED_STATES and (not op.lease_owner or op.lease_expired):
            detail = f"took over from {op.lease_owner} (lease expired)" if op.lease_owner else "claimed"
            _set_lease(op, owner=worker_id, actor=actor, detail=detail)
        else:
            return None
        op.refresh_from_db(fields=["lease_expires_at"])
        return op


def operation_checkpoint(*, op: Operation, worker_id: str, state: str = State.RUNNING, fields: dict) -> None:
    """Inside the chunk's transaction: save the checkpoint and renew the lease, but only if the
    operation is still in `state` and held by this worker; otherwise raise LeaseLost so that
    the chunk rolls back (I2).

    It is a conditional UPDATE, so it also takes the row lock that a pause or terminate
    request takes: whichever commits first wins, and the other sees it.
    """
    if connection.vendor == "postgresql":
        updated = _checkpoint_update_postgresql(op.pk, state, worker_id, fields)
    else:
        updated = Operation.objects.filter(pk=op.pk, state=state, lease_owner=worker_id).update(
            lease_expires_at=_lease_until(), updated_at=timezone.now(), **fields
        )
    if updated != 1:
        raise LeaseLost(f"operation {op.pk} is no longer {state} under {worker_id}")
    for name, value in fields.items():
        setattr(op, name, value)


def _checkpoint_update_postgresql(op_id: int, state: str, worker_id: str, fields: dict) -> int:
    """The same UPDATE as the ORM's in operation_checkpoint, written out: building and compiling
    it took the worker ~0.5 ms of CPU per chunk (1 ms when the CPU is short), about as much as
    the rest of a chunk's overhead together. STATEMENT_TIMESTAMP() is the ORM's Now()."""
    quote, opts = connection.ops.quote_name, Operation._meta
    names = [opts.get_field(name) for name in fields]
    assignments = "".join(f", {quote(field.column)} = %s" for field in names)
    sql = (
        f"UPDATE {quote(opts.db_table)} SET {quote('lease_expires_at')} = STATEMENT_TIMESTAMP() + %s, "
        f"{quote('updated_at')} = %s{assignments} WHERE {quote('id')} = %s AND {quote('state')} = %s "
        f"AND {quote('lease_owner')} = %s"
    )
    values = [field.get_db_prep_save(value, connection) for field, value in zip(names, fields.values(), strict=True)]
    lease = timedelta(seconds=settings.LONG_TASK_LEASE_SECONDS)
    with connection.cursor() as cursor:
        cursor.execute(sql, [lease, timezone.now(), *values, op_id, state, worker_id])
        return cursor.rowcount


def operation_is_held(*, op_id: int, worker_id: str, state: str = State.RUNNING) -> bool:
    """A plain read: is the operation still in `state` under this worker? Checked on SQLite
    before a parsed chunk takes the write lock, so that a pause that came meanwhile costs no
    write; the guarantee is still the conditional UPDATE of `operation_checkpoint`."""
    return Operation.objects.filter(pk=op_id, state=state, lease_owner=worker_id).exists()


def _worker_transition(op_id: int, verb: str, *, worker_id: str, detail: str = "", fields=None) -> Operation:
    with transaction.atomic():
        op = _lock(op_id)
        if op.lease_owner != worker_id:
            raise LeaseLost(f"operation {op_id} is held by {op.lease_owner or 'nobody'}, not {worker_id}")
        return _transition(op, verb, actor=Actor.for_worker(worker_id), detail=detail, fields=fields)


def operation_complete(*, op_id: int, worker_id: str, total_lines: int) -> Operation:
    """Called inside the last chunk's transaction, after its checkpoint."""
    return _worker_transition(
        op_id,
        "complete",
        worker_id=worker_id,
        fields={"total_lines": total_lines, "finished_at": timezone.now()},
    )


def operation_ack_pause(*, op_id: int, worker_id: str) -> Operation:
    return _worker_transition(op_id, "ack_pause", worker_id=worker_id, detail="stopped at checkpoint")


def operation_fail(*, op_id: int, worker_id: str, error: str) -> Operation:
    return _worker_transition(op_id, "fail", worker_id=worker_id, detail=error[:500], fields={"error": error})


def operation_release(*, op_id: int, worker_id: str, reason: str) -> Operation:
    """Give the operation back for another worker (graceful stop): running goes back to queued,
    a pause is acknowledged, a terminate keeps going elsewhere. The checkpoint stays."""
    with transaction.atomic():
        op = _lock(op_id)
        if op.lease_owner != worker_id:
            raise LeaseLost(f"operation {op_id} is not held by {worker_id}")
        actor = Actor.for_worker(worker_id)
        if op.state == State.PAUSING:
            return _transition(op, "ack_pause", actor=actor, detail=reason)
        if op.state == State.RUNNING:
            _transition(op, "requeue", actor=actor, detail=reason)
        else:
            _set_lease(op, owner="", actor=actor, detail=reason)
        _enqueue_after_commit(op.pk)
        return op


def operation_finish_terminate(*, op_id: int, worker_id: str) -> Operation:
    return _worker_transition(
        op_id,
        "finish_terminate",
        worker_id=worker_id,
        detail="rolled back",
        fields={
            "finished_at": timezone.now(),
            "lines_finished": 0,
            "lines_failed": 0,
            "position": 0,
            "rows_per_second": None,
            "file": "",
        },
    )


def operations_stalled(*, limit: int = 20) -> list[int]:
    """Ids of operations that need a worker and have none: a worked state with an expired
    lease, or queued for longer than a lease (their queue task was lost)."""
    lease = timedelta(seconds=settings.LONG_TASK_LEASE_SECONDS)
    stalled = Operation.objects.filter(
        Q(state__in=WORKED_STATES, lease_expires_at__lt=Now())
        | Q(state__in=WORKED_STATES, lease_owner="")
        | Q(state=State.QUEUED, updated_at__lt=Now() - lease)
    )
    return list(stalled.order_by("id").values_list("id", flat=True)[:limit])
