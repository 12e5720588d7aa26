"""The lease protocol: how a worker takes an operation, keeps it, and acknowledges what it did.

A worker holds an operation through `lease_owner` and `lease_expires_at`. Claiming is a
compare-and-set under the row lock; every chunk renews the lease in the same conditional
UPDATE that saves its checkpoint, so a worker whose lease was taken (or whose operation was
paused or terminated meanwhile) raises `LeaseLost` before it commits anything more (I2, I5).
Expiry is reckoned by the database's clock, never a worker's.

Everything here takes the type's checkpoint and progress as opaque Operation fields.
"""

from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import BooleanField, ExpressionWrapper, Q
from django.db.models.expressions import CombinedExpression
from django.db.models.functions import Now
from django.utils import timezone

from operations import queue
from operations.errors import LeaseLost
from operations.models import Operation
from operations.state_machine import Actor, checkpoint_of, lock, record, transition

State = Operation.State


def lease_until() -> CombinedExpression:
    """A lease's expiry, by the database's clock: workers on different machines never compare
    their own clocks with each other's."""
    return Now() + timedelta(seconds=settings.LONG_TASK_LEASE_SECONDS)


def _set_lease(op: Operation, *, owner: str, actor: Actor, detail: str) -> None:
    """Give the lease to `owner` ("" to nobody) without a change of state, and record it."""
    op.lease_owner = owner
    op.lease_expires_at = lease_until() if owner else None
    op.save(update_fields=["lease_owner", "lease_expires_at", "updated_at"])
    record(op, from_state=op.state, actor=actor, detail=detail)


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
            lease = {"lease_owner": worker_id, "lease_expires_at": lease_until()}
            transition(op, "claim", actor=actor, detail=f"claimed at {checkpoint_of(op)}", fields=lease)
        elif op.state in State.worked() and (not op.lease_owner or op.lease_expired):
            detail = "took over (the lease had expired)" if op.lease_owner else f"claimed at {checkpoint_of(op)}"
            _set_lease(op, owner=worker_id, actor=actor, detail=detail)
        else:
            return None
        op.refresh_from_db(fields=["lease_expires_at"])
        return op


def operation_checkpoint(*, op: Operation, worker_id: str, state: str = State.RUNNING, fields: dict) -> None:
    """Inside the chunk's transaction: save the checkpoint `fields` and renew the lease, but
    only if the operation is still in `state` and held by this worker; otherwise raise
    LeaseLost so that the chunk rolls back (I2).

    It is a conditional UPDATE, so it also takes the row lock that a pause or terminate
    request takes: whichever commits first wins, and the other sees it.
    """
    if connection.vendor in ("postgresql", "sqlite"):
        updated = _checkpoint_update(op.pk, state, worker_id, fields)
    else:
        updated = Operation.objects.filter(pk=op.pk, state=state, lease_owner=worker_id).update(
            lease_expires_at=lease_until(), updated_at=timezone.now(), **fields
        )
    if updated != 1:
        raise LeaseLost(f"operation {op.pk} is no longer {state} under this worker")
    for name, value in fields.items():
        setattr(op, name, value)


def _checkpoint_update(op_id: int, state: str, worker_id: str, fields: dict) -> int:
    """The same UPDATE as the ORM's in operation_checkpoint, written out: building and compiling
    it through the ORM on every chunk cost the worker about as much CPU as the rest of a
    chunk's overhead together (docs/performance.md). On PostgreSQL STATEMENT_TIMESTAMP() is the
    ORM's Now(); SQLite's clock is this machine's, as the ORM's Now() there."""
    quote, opts = connection.ops.quote_name, Operation._meta
    names = [opts.get_field(name) for name in fields]
    assignments = "".join(f", {quote(field.column)} = %s" for field in names)
    now = timezone.now()
    lease = timedelta(seconds=settings.LONG_TASK_LEASE_SECONDS)
    if connection.vendor == "postgresql":
        expiry, expiry_params = "STATEMENT_TIMESTAMP() + %s", [lease]
    else:
        expiry, expiry_params = "%s", [opts.get_field("lease_expires_at").get_db_prep_save(now + lease, connection)]
    sql = (
        f"UPDATE {quote(opts.db_table)} SET {quote('lease_expires_at')} = {expiry}, "
        f"{quote('updated_at')} = %s{assignments} WHERE {quote('id')} = %s AND {quote('state')} = %s "
        f"AND {quote('lease_owner')} = %s"
    )
    values = [field.get_db_prep_save(fields[field.name], connection) for field in names]
    updated_at = opts.get_field("updated_at").get_db_prep_save(now, connection)
    with connection.cursor() as cursor:
        cursor.execute(sql, [*expiry_params, updated_at, *values, op_id, state, worker_id])
        return cursor.rowcount


def operation_is_held(*, op_id: int, worker_id: str, state: str = State.RUNNING) -> bool:
    """A plain read: is the operation still in `state` under this worker? Checked on SQLite
    before each chunk takes the write lock, so that a pause that came while the chunk was read
    costs no wasted write; the guarantee is still the conditional UPDATE of
    `operation_checkpoint`."""
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:  # written out, as the checkpoint: it runs every chunk
        cursor.execute(
            f"SELECT 1 FROM {quote(Operation._meta.db_table)} WHERE {quote('id')} = %s AND {quote('state')} = %s"
            f" AND {quote('lease_owner')} = %s",
            [op_id, state, worker_id],
        )
        return cursor.fetchone() is not None


def _held(op_id: int, worker_id: str) -> Operation:
    op = lock(op_id)
    if op.lease_owner != worker_id:
        raise LeaseLost(f"operation {op_id} is no longer held by this worker")
    return op


def _acknowledge(op_id: int, verb: str, *, worker_id: str, detail: str = "", fields=None) -> Operation:
    with transaction.atomic():
        op = _held(op_id, worker_id)
        return transition(op, verb, actor=Actor.for_worker(worker_id), detail=detail, fields=fields)


def operation_complete(*, op_id: int, worker_id: str) -> Operation:
    """Called inside the last chunk's transaction, after its checkpoint."""
    return _acknowledge(op_id, "complete", worker_id=worker_id, fields={"finished_at": timezone.now()})


def operation_ack_pause(*, op_id: int, worker_id: str, detail: str) -> Operation:
    return _acknowledge(op_id, "ack_pause", worker_id=worker_id, detail=detail)


def operation_fail(*, op_id: int, worker_id: str, error: str) -> Operation:
    """`error` is what the user reads: a message, never a traceback (that goes to the log)."""
    return _acknowledge(op_id, "fail", worker_id=worker_id, detail=error[:500], fields={"error": error})


def operation_release(*, op_id: int, worker_id: str, detail: str) -> Operation:
    """Give the operation back for another worker (graceful stop): running goes back to queued,
    a pause is acknowledged, a terminate keeps going elsewhere. The checkpoint stays."""
    with transaction.atomic():
        op = _held(op_id, worker_id)
        actor = Actor.for_worker(worker_id)
        if op.state == State.PAUSING:
            return transition(op, "ack_pause", actor=actor, detail=detail)
        if op.state == State.RUNNING:
            transition(op, "requeue", actor=actor, detail=detail)
        else:
            _set_lease(op, owner="", actor=actor, detail=detail)
        queue.enqueue_after_commit(op.pk)
        return op


def operation_finish_terminate(*, op_id: int, worker_id: str, fields: dict) -> Operation:
    """The rollback is done: `fields` are what the type says a terminated operation keeps."""
    return _acknowledge(
        op_id,
        "finish_terminate",
        worker_id=worker_id,
        detail="rolled back",
        fields={**fields, "finished_at": timezone.now(), "rows_per_second": None},
    )
