"""The admin (SPEC §10): pages render with progress, events and row errors; the actions go
through the state machine, report each operation, and refuse without a 500 or a change."""

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from operations.admin.operation_admin import ROW_ERRORS_SHOWN
from operations.models import Operation, OperationEvent, RowError
from tests.support import operation_in_state

S = Operation.State
CHANGELIST = reverse("admin:operations_operation_changelist")


make_op = operation_in_state


def change_url(op: Operation) -> str:
    return reverse("admin:operations_operation_change", args=[op.pk])


def run_action(client, action: str, *ops: Operation):
    response = client.post(CHANGELIST, {"action": action, "_selected_action": [op.pk for op in ops]}, follow=True)
    assert response.status_code == 200
    return [(message.level_tag, message.message) for message in response.context["messages"]]


@pytest.fixture
def ops_in_every_state(admin_user) -> list[Operation]:
    ops = []
    for state in S.values:
        op = make_op(
            state,
            owner=admin_user,
            file_name=f"{state}.csv",
            file_size=1000,
            position=400,
            lines_finished=40,
            lines_failed=2,
            rows_per_second=123.0,
        )
        OperationEvent.objects.create(operation=op, actor="user:admin", from_state="", to_state=state)
        RowError.objects.create(operation=op, line_number=7, reason="too many fields", raw="a,b,c,d,e")
        ops.append(op)
    return ops


# --- pages ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_changelist_shows_state_owner_progress_and_speed(admin_client, ops_in_every_state):
    response = admin_client.get(CHANGELIST)
    assert response.status_code == 200
    html = response.content.decode()
    assert html.count("<progress") == len(ops_in_every_state)
    assert 'value="100.0"' in html  # completed
    assert 'value="40.0"' in html  # the others: 400 of 1000 bytes
    assert "38 imported, 2 rejected" in html  # imported = finished - failed
    assert "123" in html  # rows/s of the running and pausing ones
    for label in S.labels:
        assert f">{label}<" in html


@pytest.mark.django_db
def test_changelist_filters_and_search(admin_client, ops_in_every_state):
    paused = next(op for op in ops_in_every_state if op.state == S.PAUSED)

    response = admin_client.get(CHANGELIST, {"state__exact": S.PAUSED})
    assert list(response.context["cl"].result_list) == [paused]

    for term in (str(paused.pk), "paused.csv"):
        response = admin_client.get(CHANGELIST, {"q": term})
        assert list(response.context["cl"].result_list) == [paused], term

    response = admin_client.get(CHANGELIST, {"q": "admin"})
    assert len(response.context["cl"].result_list) == len(ops_in_every_state)


@pytest.mark.django_db
@pytest.mark.parametrize("state", S.values)
def test_change_page_shows_events_and_row_errors(admin_client, ops_in_every_state, state):
    op = next(op for op in ops_in_every_state if op.state == state)
    response = admin_client.get(change_url(op))
    assert response.status_code == 200
    html = response.content.decode()
    assert "user:admin" in html  # the event
    assert "too many fields" in html  # the row error
    assert "<progress" in html
    assert f"/api/operations/{op.pk}/row-errors/" in html


@pytest.mark.django_db
def test_change_page_lists_only_the_first_row_errors(admin_client):
    op = make_op(S.COMPLETED)
    RowError.objects.bulk_create(
        RowError(operation=op, line_number=n, reason=f"bad row {n:04d}") for n in range(1, ROW_ERRORS_SHOWN + 51)
    )
    html = admin_client.get(change_url(op)).content.decode()
    assert f"bad row {ROW_ERRORS_SHOWN:04d}" in html
    assert f"bad row {ROW_ERRORS_SHOWN + 1:04d}" not in html
    assert f">{ROW_ERRORS_SHOWN + 50}</span> (all of them" in html  # the count is live (as `failed`)


@pytest.mark.django_db
def test_operations_are_not_edited_added_or_deleted_by_hand(admin_client):
    op = make_op(S.RUNNING, lines_finished=5)
    html = admin_client.get(change_url(op)).content.decode()
    assert 'name="_save"' not in html
    assert 'name="state"' not in html

    response = admin_client.post(change_url(op), {"state": S.COMPLETED, "lines_finished": 0})
    assert response.status_code == 403
    assert admin_client.get(reverse("admin:operations_operation_add")).status_code == 403
    assert admin_client.get(reverse("admin:operations_operation_delete", args=[op.pk])).status_code == 403
    op.refresh_from_db()
    assert (op.state, op.lines_finished) == (S.RUNNING, 5)


# --- actions --------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("action", "before", "after", "enqueued"),
    [
        ("pause", S.QUEUED, S.PAUSED, False),
        ("pause", S.RUNNING, S.PAUSING, False),
        ("resume", S.PAUSED, S.QUEUED, True),
        ("resume", S.FAILED, S.QUEUED, True),
        ("terminate_force", S.RUNNING, S.TERMINATING, True),
        ("terminate_force", S.PAUSED, S.TERMINATING, True),
        ("terminate_force", S.REGISTERED, S.TERMINATED, False),
    ],
)
def test_action_moves_the_state_and_records_the_event(
    admin_client, django_capture_on_commit_callbacks, action, before, after, enqueued
):
    op = make_op(before)
    with django_capture_on_commit_callbacks() as callbacks:
        messages = run_action(admin_client, action, op)

    op.refresh_from_db()
    assert op.state == after
    label = {"pause": "Paused", "resume": "Resumed", "terminate_force": "Terminating"}[action]
    assert messages == [("success", f"{label}: #{op.pk} is {after}.")]
    event = OperationEvent.objects.filter(operation=op).order_by("id").first()
    assert (event.actor, event.from_state) == ("user:admin", before)
    assert OperationEvent.objects.filter(operation=op).last().to_state == after
    assert len(callbacks) == (1 if enqueued else 0)  # a worker is woken after commit


@pytest.mark.django_db
def test_refused_action_reports_the_reason_and_changes_nothing(admin_client):
    done = make_op(S.COMPLETED, lines_finished=10)
    messages = run_action(admin_client, "pause", done)

    assert messages == [("error", f"Refused: #{done.pk}: Upload already finished.")]
    done.refresh_from_db()
    assert (done.state, done.lines_finished) == (S.COMPLETED, 10)
    assert not OperationEvent.objects.filter(operation=done).exists()


@pytest.mark.django_db
def test_action_on_several_reports_each_operation(admin_client):
    queued, running, terminated = make_op(S.QUEUED), make_op(S.RUNNING), make_op(S.TERMINATED)
    messages = run_action(admin_client, "pause", queued, running, terminated)

    assert messages == [
        ("success", f"Paused: #{queued.pk} is paused, #{running.pk} is pausing."),
        ("error", f"Refused: #{terminated.pk}: Upload already terminated."),
    ]
    assert [op.state for op in Operation.objects.order_by("id")] == [S.PAUSED, S.PAUSING, S.TERMINATED]


@pytest.mark.django_db
def test_view_only_staff_sees_operations_but_cannot_act(client, django_user_model):
    viewer = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_operation"))
    client.force_login(viewer)
    op = make_op(S.RUNNING)

    response = client.get(CHANGELIST)
    assert response.status_code == 200
    assert 'value="pause"' not in response.content.decode()
    client.post(CHANGELIST, {"action": "pause", "_selected_action": [op.pk]})
    op.refresh_from_db()
    assert op.state == S.RUNNING
