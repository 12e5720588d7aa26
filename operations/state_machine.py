"""The state machine (SPEC §3): the transition table, its refusal messages, and the one guarded
function that changes `Operation.state`.

`transition` must be called on an operation locked by `lock` (or, for the worker's own
transitions, through `leases`), inside the transaction that also records its event. Requests
(pause, terminate) are kept apart from acknowledgements (paused, terminated): only a worker that
holds the lease makes the latter, after it has acted.

Locks are `FOR NO KEY UPDATE` on PostgreSQL: inserting a row that references the operation
takes `FOR KEY SHARE` on it, which `FOR UPDATE` would wait for, so a pause would wait for the
chunk in flight. On SQLite every transaction begins IMMEDIATE, which serialises writers.
"""

from dataclasses import dataclass

from django.utils import timezone

from operations import access
from operations.errors import Conflict, Forbidden, NotFound
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


def allows(verb: str, state: str) -> bool:
    return state in TRANSITIONS[verb]


def refusal_message(verb: str, op: Operation) -> str:
    """The 409 message of SPEC §5 for `verb` in the operation's current state."""
    kind, state = op.op_type, op.state
    if verb == "terminate" and allows("force_terminate", state) and not allows("terminate", state):
        return "Pause the operation"
    if verb == "pause" and state == State.PAUSING:
        return f"{kind} already paused"
    by_state = {
        State.REGISTERED: f"{kind} not started",
        # SPEC §5: for these messages, queued and pausing count as running.
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


def refusal_hint(verb: str, op: Operation) -> str:
    """A suggestion beside the refusal, where there is a way forward (SPEC §6)."""
    if verb == "terminate" and allows("force_terminate", op.state) and not allows("terminate", op.state):
        return "force=true terminates a running operation"
    return ""


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

    @classmethod
    def for_worker(cls, worker_id: str) -> "Actor":
        return cls(f"worker:{worker_id}")

    @property
    def owner(self):
        """The user who owns what this actor creates (None: anonymous or system)."""
        return self.user if self.user is not None and self.user.is_authenticated else None


def lock(op_id: int, *, user=None) -> Operation:
    """The operation, row-locked until the end of the transaction. With `user`, only if that
    user may act on it: one the user may not see is NotFound, like a missing one; one the user
    may only see is Forbidden (see `access`)."""
    queryset = Operation.objects.select_for_update(no_key=True)
    if user is not None:
        queryset = queryset.visible_to(user)
    try:
        op = queryset.get(pk=op_id)
    except Operation.DoesNotExist:
        raise NotFound() from None
    if user is not None and not access.can_control(user, op):
        raise Forbidden()
    return op


def checkpoint_of(op: Operation) -> str:
    """Where the operation stands, as its type describes it for the events (e.g. "line 7,500")."""
    return registry.get(op.op_type).describe_checkpoint(op)


def record(op: Operation, *, from_state: str, actor: Actor, detail: str = "", where: str | None = None) -> None:
    """Record a transition (or a change of lease) as an event. An event whose detail would say
    nothing says where the operation stood (`where`, by default its checkpoint now: "at line
    7,500"), so that the history reads as the record of a run; the creation says "registered"."""
    if from_state and not detail:
        detail = f"at {where or checkpoint_of(op)}"
    OperationEvent.objects.create(
        operation=op, actor=actor.label, from_state=from_state, to_state=op.state, detail=detail
    )


def ensure_allowed(verb: str, op: Operation) -> str:
    """The state `verb` leads to from the operation's state, or Conflict with SPEC §5's message."""
    target = TRANSITIONS[verb].get(op.state)
    if target is None:
        raise Conflict(refusal_message(verb, op), hint=refusal_hint(verb, op))
    return target


def transition(op: Operation, verb: str, *, actor: Actor, detail: str = "", fields: dict | None = None) -> Operation:
    """Apply `verb` to the locked `op` with `fields`, or raise Conflict with SPEC §5's message;
    record the event. Leaving the worked states drops the lease."""
    target = ensure_allowed(verb, op)
    from_state = op.state
    # Where it stood when the transition happened, before `fields` (a rollback zeroes them).
    where = checkpoint_of(op)
    changes = {**(fields or {}), "state": target, "updated_at": timezone.now()}
    if target not in State.worked():
        changes.setdefault("lease_owner", "")
        changes.setdefault("lease_expires_at", None)
    for name, value in changes.items():
        setattr(op, name, value)
    op.save(update_fields=list(changes))
    record(op, from_state=from_state, actor=actor, detail=detail, where=where)
    return op
