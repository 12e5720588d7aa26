"""The reads: the status object's figures, what needs a worker, and what each read costs in
queries (constant whatever the number of operations, rows and row errors)."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from operations import selectors
from operations.models import Operation, RowError
from tests.support import token_client

S = Operation.State
pytestmark = pytest.mark.django_db


def test_percent_comes_from_the_type_and_the_final_states(in_state):
    running = in_state(S.RUNNING, file_size=1_000, position=250, lines_finished=10)
    assert selectors.percent_done(running) == 25.0
    assert selectors.percent_done(in_state(S.COMPLETED, file_size=1_000, position=990)) == 100.0
    assert selectors.percent_done(in_state(S.TERMINATED, file_size=1_000, position=990)) is None
    assert selectors.percent_done(in_state(S.REGISTERED)) is None


def test_rate_and_eta_only_while_a_worker_moves_it(in_state):
    moving = in_state(S.RUNNING, file_size=1_000, position=250, lines_finished=100, rows_per_second=50.0)
    assert selectors.rows_per_second(moving) == 50.0
    assert selectors.eta_seconds(moving) == 6.0  # 300 rows to go at 50 rows/s
    for state in set(S.values) - set(S.moving()):
        still = in_state(state, file_size=1_000, position=250, lines_finished=100, rows_per_second=50.0)
        assert selectors.rows_per_second(still) is None
        assert selectors.eta_seconds(still) is None


def test_operation_get_hides_other_users_operations(in_state, user, other_user, staff_user):
    from operations.errors import NotFound

    op = in_state(S.PAUSED, owner=user)
    assert selectors.operation_get(op_id=op.pk, user=user) == op
    assert selectors.operation_get(op_id=op.pk, user=staff_user) == op
    with pytest.raises(NotFound):
        selectors.operation_get(op_id=op.pk, user=other_user)


def queries(call) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = call()
    assert response.status_code == 200, response.content
    return len(captured)


def test_status_detail_and_list_cost_the_same_queries_whatever_the_numbers(user, in_state):
    client = token_client(user)
    first = in_state(S.RUNNING, owner=user)
    RowError.objects.create(operation=first, line_number=1, reason="x")
    costs = lambda: (  # noqa: E731
        queries(lambda: client.post("/get_status/", {"op_id": first.pk})),
        queries(lambda: client.get(f"/api/operations/{first.pk}/")),
        queries(lambda: client.get("/api/operations/")),
        queries(lambda: client.get(f"/api/operations/{first.pk}/row-errors/")),
    )
    few = costs()
    for n in range(120):
        in_state(S.PAUSED, owner=user, lines_finished=n)
    RowError.objects.bulk_create(RowError(operation=first, line_number=n, reason="x") for n in range(2, 300))
    many = costs()
    assert few == many
    # token, operation (an owner's needs no permission lookup); token, the user's and the groups'
    # permissions (may the user see everyone's?), count, page; token, operation, count, page
    assert few == (2, 2, 5, 4)
    assert queries(lambda: client.get("/api/operations/?page=3")) == many[2]
