"""Every transition of SPEC §3, valid and invalid, and the properties that hold whatever the
sequence of requests: one event per transition, a consistent history, final states final."""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from operations import leases, selectors, services
from operations.errors import Conflict, LeaseLost, NotFound
from operations.models import Operation, OperationEvent
from operations.state_machine import Actor
from tests.support import csv_bytes, operation_in_state, upload_file

S = Operation.State
ALL_STATES = [state for state, _ in S.choices]
WORKER = "host:1:abc"


def make_op(state: str, *, lease_owner: str = "", **fields) -> Operation:
    """Unlike the shared helper, no lease unless one is given: claims are tested on both."""
    return operation_in_state(state, lease_owner=lease_owner, **fields)


def system() -> Actor:
    return Actor("system")


# Expected outcomes, written out from SPEC §3 and §5 rather than derived from the code.
PAUSE = {
    S.QUEUED: S.PAUSED,
    S.RUNNING: S.PAUSING,
    S.PAUSING: "Upload already paused",
    S.PAUSED: "Upload already paused",
    S.REGISTERED: "Upload not started",
    S.COMPLETED: "Upload already finished",
    S.FAILED: "Upload failed: resume or terminate it",
    S.TERMINATING: "Upload already terminated",
    S.TERMINATED: "Upload already terminated",
}
RESUME = {
    S.PAUSED: S.QUEUED,
    S.FAILED: S.QUEUED,
    S.REGISTERED: "Upload not started",
    S.QUEUED: "Upload already running",
    S.RUNNING: "Upload already running",
    S.PAUSING: "Upload already running",
    S.COMPLETED: "Upload already finished",
    S.TERMINATING: "Upload already terminated",
    S.TERMINATED: "Upload already terminated",
}
TERMINATE = {
    S.REGISTERED: S.TERMINATED,  # nothing to roll back
    S.PAUSED: S.TERMINATING,
    S.FAILED: S.TERMINATING,
    S.QUEUED: "Pause the operation",
    S.RUNNING: "Pause the operation",
    S.PAUSING: "Pause the operation",
    S.COMPLETED: "Upload already finished",
    S.TERMINATING: "Upload already terminated",
    S.TERMINATED: "Upload already terminated",
}
FORCE_TERMINATE = {**TERMINATE, S.QUEUED: S.TERMINATING, S.RUNNING: S.TERMINATING, S.PAUSING: S.TERMINATING}
# The seed's /upload/: a start, or a resume of a paused or failed operation.
START = {
    S.REGISTERED: S.QUEUED,
    S.QUEUED: "Upload already running",
    S.RUNNING: "Upload already running",
    S.PAUSING: "Upload already running",
    S.PAUSED: S.QUEUED,
    S.COMPLETED: "Upload already finished",
    S.FAILED: S.QUEUED,
    S.TERMINATING: "Upload already terminated",
    S.TERMINATED: "Upload already terminated",
}

REQUESTS = {
    "pause": (PAUSE, lambda op: services.operation_pause(op_id=op.pk, actor=system())),
    "resume": (RESUME, lambda op: services.operation_resume(op_id=op.pk, actor=system())),
    "terminate": (TERMINATE, lambda op: services.operation_terminate(op_id=op.pk, actor=system())),
    "force_terminate": (
        FORCE_TERMINATE,
        lambda op: services.operation_terminate(op_id=op.pk, actor=system(), force=True),
    ),
    "start": (
        START,
        lambda op: services.operation_start(
            op_id=op.pk,
            actor=system(),
            data={},
            files={"file": upload_file(csv_bytes(3))} if op.state == S.REGISTERED else {},
        )[0],
    ),
}


@pytest.mark.django_db
@pytest.mark.parametrize("state", ALL_STATES)
@pytest.mark.parametrize("verb", list(REQUESTS))
def test_request_in_every_state(verb, state):
    expected_table, call = REQUESTS[verb]
    expected = expected_table[state]
    op = make_op(state, lease_owner=WORKER if state in S.worked() else "")
    events_before = OperationEvent.objects.filter(operation=op).count()

    if expected in ALL_STATES:
        result = call(op)
        op.refresh_from_db()
        assert op.state == expected == result.state
        events = list(OperationEvent.objects.filter(operation=op).order_by("id"))[events_before:]
        assert events[0].from_state == state
        assert events[-1].to_state == expected
        assert all(event.actor == "system" for event in events)
    else:
        with pytest.raises(Conflict) as refused:
            call(op)
        assert refused.value.message == expected
        assert refused.value.status_code == 409
        op.refresh_from_db()
        assert op.state == state
        assert OperationEvent.objects.filter(operation=op).count() == events_before


@pytest.mark.django_db
def test_request_on_missing_or_foreign_operation_is_not_found(django_user_model):
    alice = django_user_model.objects.create_user("alice")
    bob = django_user_model.objects.create_user("bob")
    op = make_op(S.QUEUED, owner=alice)
    with pytest.raises(NotFound) as missing:
        services.operation_pause(op_id=op.pk + 1000, actor=Actor.for_user(alice))
    with pytest.raises(NotFound) as foreign:
        services.operation_pause(op_id=op.pk, actor=Actor.for_user(bob))
    assert missing.value.message == foreign.value.message == "Operation ID Invalid"
    op.refresh_from_db()
    assert op.state == S.QUEUED


# --- the worker's side ------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("state", ALL_STATES)
def test_claim_takes_only_what_needs_a_worker(state):
    free = make_op(state)
    held = make_op(state, lease_owner="other:2:def")
    expired = make_op(state, lease_owner="dead:3:123", expired=True)

    claimed_free = leases.operation_claim(op_id=free.pk, worker_id=WORKER)
    claimed_held = leases.operation_claim(op_id=held.pk, worker_id=WORKER)
    claimed_expired = leases.operation_claim(op_id=expired.pk, worker_id=WORKER)

    needs_worker = state in S.active()
    assert (claimed_free is not None) == needs_worker
    # A live lease is never stolen, except that a queued operation has none to respect.
    assert (claimed_held is not None) == (state == S.QUEUED)
    assert (claimed_expired is not None) == needs_worker
    for op, claimed in ((free, claimed_free), (expired, claimed_expired)):
        op.refresh_from_db()
        if claimed:
            assert op.lease_owner == WORKER
            assert op.state == (S.RUNNING if state == S.QUEUED else state)
    held.refresh_from_db()
    if state != S.QUEUED:
        assert held.lease_owner == "other:2:def"


WORKER_VERBS = {
    "ack_pause": (lambda op, w: leases.operation_ack_pause(op_id=op.pk, worker_id=w, detail=""), {S.PAUSING: S.PAUSED}),
    "complete": (
        lambda op, w: leases.operation_complete(op_id=op.pk, worker_id=w),
        {S.RUNNING: S.COMPLETED},
    ),
    "fail": (
        lambda op, w: leases.operation_fail(op_id=op.pk, worker_id=w, error="boom"),
        {S.RUNNING: S.FAILED, S.PAUSING: S.FAILED},
    ),
    "finish_terminate": (
        lambda op, w: leases.operation_finish_terminate(op_id=op.pk, worker_id=w, fields={}),
        {S.TERMINATING: S.TERMINATED},
    ),
    "release": (
        lambda op, w: leases.operation_release(op_id=op.pk, worker_id=w, detail="stopping"),
        {S.RUNNING: S.QUEUED, S.PAUSING: S.PAUSED, S.TERMINATING: S.TERMINATING},
    ),
}


@pytest.mark.django_db
@pytest.mark.parametrize("state", S.worked())
@pytest.mark.parametrize("verb", list(WORKER_VERBS))
def test_worker_acknowledgements(verb, state):
    call, allowed = WORKER_VERBS[verb]
    op = make_op(state, lease_owner=WORKER)
    if state in allowed:
        call(op, WORKER)
        op.refresh_from_db()
        assert op.state == allowed[state]
        if op.state not in S.worked() or verb == "release":
            assert op.lease_owner == ""
    else:
        with pytest.raises(Conflict):
            call(op, WORKER)
    # A worker that does not hold the lease can acknowledge nothing.
    other = make_op(state, lease_owner="other:2:def")
    with pytest.raises(LeaseLost):
        call(other, WORKER)
    other.refresh_from_db()
    assert other.state == state


@pytest.mark.django_db
def test_checkpoint_refuses_after_pause_or_lease_loss():
    op = make_op(S.RUNNING, lease_owner=WORKER)
    leases.operation_checkpoint(op=op, worker_id=WORKER, fields={"lines_finished": 10, "position": 99})
    op.refresh_from_db()
    assert (op.lines_finished, op.position) == (10, 99)

    with pytest.raises(LeaseLost):
        leases.operation_checkpoint(op=op, worker_id="intruder:9:999", fields={"lines_finished": 20})
    services.operation_pause(op_id=op.pk, actor=system())
    with pytest.raises(LeaseLost):
        leases.operation_checkpoint(op=op, worker_id=WORKER, fields={"lines_finished": 20})
    op.refresh_from_db()
    assert op.lines_finished == 10


@pytest.mark.django_db
def test_stalled_operations_are_found():
    queued_long_ago = make_op(S.QUEUED)
    Operation.objects.filter(pk=queued_long_ago.pk).update(updated_at=timezone.now() - timedelta(hours=1))
    fresh_queue = make_op(S.QUEUED)
    dead = make_op(S.RUNNING, lease_owner="dead:1:1", expired=True)
    alive = make_op(S.RUNNING, lease_owner="alive:1:1")
    orphan_terminate = make_op(S.TERMINATING)
    paused = make_op(S.PAUSED)
    stalled = set(selectors.operations_stalled())
    assert {queued_long_ago.pk, dead.pk, orphan_terminate.pk} <= stalled
    assert not {fresh_queue.pk, alive.pk, paused.pk} & stalled


# --- properties over any sequence ---------------------------------------------------------------

ANY_VERB = st.sampled_from(
    [
        "pause",
        "resume",
        "terminate",
        "force_terminate",
        "start",
        "claim",
        "ack",
        "complete",
        "fail",
        "release",
        "finish",
        "expire",
    ]
)


def _apply(op: Operation, verb: str) -> None:
    worker = op.lease_owner or WORKER
    calls = {
        "claim": lambda: leases.operation_claim(op_id=op.pk, worker_id=f"w:{op.events.count()}"),
        "ack": lambda: leases.operation_ack_pause(op_id=op.pk, worker_id=worker, detail=""),
        "complete": lambda: leases.operation_complete(op_id=op.pk, worker_id=worker),
        "fail": lambda: leases.operation_fail(op_id=op.pk, worker_id=worker, error="x"),
        "release": lambda: leases.operation_release(op_id=op.pk, worker_id=worker, detail="x"),
        "finish": lambda: leases.operation_finish_terminate(op_id=op.pk, worker_id=worker, fields={}),
        "expire": lambda: Operation.objects.filter(pk=op.pk).update(lease_expires_at=timezone.now() - timedelta(1)),
    }
    try:
        if verb in REQUESTS:
            REQUESTS[verb][1](op)
        else:
            calls[verb]()
    except (Conflict, LeaseLost):
        pass


@pytest.mark.django_db
@hypothesis_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(verbs=st.lists(ANY_VERB, max_size=25))
def test_any_sequence_keeps_a_consistent_history(verbs):
    op = services.operation_register(op_type="Upload", actor=system(), data={})
    for verb in verbs:
        before = Operation.objects.get(pk=op.pk).state
        _apply(op, verb)
        op.refresh_from_db()
        assert op.state in ALL_STATES
        if before in S.final():
            assert op.state == before, "final states are final"
        if op.state not in S.worked():
            assert op.lease_owner == "", "only a worked operation has a lease"
    # Each event starts where the previous one ended; the last ends in the current state.
    events = list(op.events.order_by("id"))
    assert events[0].from_state == "" and events[0].to_state == S.REGISTERED
    for previous, event in zip(events, events[1:], strict=False):
        assert event.from_state == previous.to_state
    assert events[-1].to_state == op.state


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_serialise_under_the_row_lock():
    """Threads with their own connections race pause/resume/terminate on the same operations;
    without the row lock two of them could validate against the same old state."""
    ops = [make_op(S.QUEUED) for _ in range(6)]
    errors: list[BaseException] = []

    def hammer(seed: int) -> None:
        verbs = ["pause", "resume", "pause", "resume", "force_terminate"]
        try:
            for i in range(12):
                for op in ops:
                    _apply(op, verbs[(seed + i) % len(verbs)])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=hammer, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    for op in ops:
        events = list(OperationEvent.objects.filter(operation=op).order_by("id"))
        for previous, event in zip(events, events[1:], strict=False):
            assert event.from_state == previous.to_state, [(e.from_state, e.to_state) for e in events]
