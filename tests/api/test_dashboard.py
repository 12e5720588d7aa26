"""The dashboard (operations/admin/dashboard.py, operations/dashboard.py): the admin's index and
`/` once logged in, its live view, and their queries, flat in the number of operations, workers,
samples and row errors."""

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from operations import heartbeats
from operations.dashboard import CHART_MINUTES, dashboard_snapshot
from operations.models import Operation, RowError, ThroughputSample, WorkerProcess
from tests.support import operation_in_state

pytestmark = pytest.mark.django_db
S = Operation.State
INDEX, LIVE = "/admin/", "/dashboard/live/"


def worker(worker_id: str, op: Operation | None = None, *, silent: bool = False) -> WorkerProcess:
    seen = timezone.now() - timedelta(seconds=120 if silent else 1)
    return WorkerProcess.objects.create(
        worker_id=worker_id,
        host="host-a",
        pid=4242,
        started_at=seen - timedelta(minutes=5),
        last_seen=seen,
        operation=op,
    )


def held_by(worker_id: str, *, expired: bool = False, **fields) -> Operation:
    return operation_in_state(S.RUNNING, lease_owner=worker_id, expired=expired, **fields)


def worker_row(html: str, worker_id: str) -> str:
    found = re.search(rf'<tr data-worker="{worker_id}"[^>]*>.*?</tr>', html, re.S)
    assert found, f"no row of worker {worker_id}"
    return found.group(0)


# --- what it shows ---------------------------------------------------------------------------


def test_the_admin_index_is_the_dashboard(admin_client):
    running = held_by(
        "w-1",
        file_name="people.csv",
        file_size=1000,
        position=250,
        total_lines=1000,
        lines_finished=250,
        rows_per_second=500,
    )
    worker("w-1", running)
    operation_in_state(S.FAILED, file_name="bad.csv", error="line 7: expected 4 fields, found 3")
    operation_in_state(S.COMPLETED)
    html = admin_client.get(INDEX).content.decode()
    assert "<h1>Dashboard</h1>" in html
    assert 'id="lt-dashboard" data-live-url="/dashboard/live/"' in html
    # Running now, with its bar.
    assert re.search(r'<tr data-dash-op="\d+">.*people\.csv.*<progress max="100" value="25\.0"', html, re.S)
    # Counts by state.
    assert '<b data-dash-count="running">1</b>' in html and '<b data-dash-count="completed">1</b>' in html
    # Recent failures with their reason.
    assert "line 7: expected 4 fields, found 3" in html
    # The worker, its operation, checkpoint and lease.
    row = worker_row(html, "w-1")
    assert "host-a &middot; 4242" in row and "people.csv" in row and "line 250" in row
    assert re.search(r"in (\d+m)?\d+s", row) and "lt-stalled" not in row
    # The chart, and the admin's own index below it.
    assert '<svg class="lt-chart"' in html and "Administration" in html


def test_a_stalled_lease_is_marked_and_a_silent_worker_greyed(admin_client):
    worker("w-stalled", held_by("w-stalled", expired=True))
    worker("w-silent", None, silent=True)
    orphan = held_by("w-gone", expired=True)  # its worker was killed and pruned
    worker("w-idle")
    html = admin_client.get(INDEX).content.decode()
    stalled = worker_row(html, "w-stalled")
    assert 'class="lt-stalled"' in stalled and re.search(r"stalled: expired \d+s ago", stalled)
    assert 'class="lt-silent"' in worker_row(html, "w-silent")
    gone = worker_row(html, "w-gone")
    assert 'class="lt-stalled"' in gone and f"#{orphan.pk}" in gone and "not seen" in gone
    assert '<td class="lt-idle lt-wide">idle</td>' in worker_row(html, "w-idle")
    assert "2 alive" in html and "2 stalled" in html  # w-silent is not alive


def test_a_worker_silent_for_longer_than_it_is_remembered_is_not_listed(admin_client):
    long_ago = timezone.now() - timedelta(seconds=heartbeats.FORGET_SECONDS + 1)
    WorkerProcess.objects.create(worker_id="w-old", host="h", pid=1, started_at=long_ago, last_seen=long_ago)
    worker("w-recent", silent=True)
    html = admin_client.get(INDEX).content.decode()
    assert 'data-worker="w-recent"' in html and 'data-worker="w-old"' not in html


def test_an_operation_that_its_worker_no_longer_holds_is_not_a_stalled_lease(admin_client):
    op = held_by("w-new", expired=False)
    worker("w-old", op)  # it said it held op, which another worker took over since
    row = worker_row(admin_client.get(INDEX).content.decode(), "w-old")
    assert "(no longer held)" in row and "lt-stalled" not in row


def test_the_chart_is_rows_per_second_by_minute_over_the_last_hour(admin_user):
    op = operation_in_state(S.COMPLETED)
    now = heartbeats.current_minute()
    ThroughputSample.objects.bulk_create(
        [
            ThroughputSample(minute=now - 2, rows=6000, seconds=5, worker_id="w", operation=op),
            ThroughputSample(minute=now - 2, rows=6000, seconds=5, worker_id="w", operation=op),
            ThroughputSample(minute=now - CHART_MINUTES - 1, rows=99, seconds=5, worker_id="w", operation=op),
        ]
    )
    snapshot = dashboard_snapshot(user=admin_user)
    assert len(snapshot.throughput) == CHART_MINUTES
    assert snapshot.throughput[-3] == (now - 2, 200.0)  # 12,000 rows in that minute
    assert snapshot.rows_last_hour == 12000


def test_the_chart_draws_the_minutes_with_their_rate(admin_client):
    op = operation_in_state(S.COMPLETED)
    ThroughputSample.objects.create(
        minute=heartbeats.current_minute() - 1, rows=60_000, seconds=5, worker_id="w", operation=op
    )
    html = admin_client.get(INDEX).content.decode()
    assert "1,000 rows/s</title>" in html
    assert "60,000</b> rows in the last hour" in html


def test_a_user_sees_only_the_work_they_may_see(client, user, other_user):
    mine = held_by("w-mine", owner=user, file_name="mine.csv")
    theirs = held_by("w-theirs", owner=other_user, file_name="theirs.csv")
    worker("w-mine", mine)
    worker("w-theirs", theirs)
    ThroughputSample.objects.create(
        minute=heartbeats.current_minute() - 1, rows=600, seconds=5, worker_id="w", operation=theirs
    )
    client.force_login(user)
    html = client.get("/").content.decode()
    assert "mine.csv" in html and "theirs.csv" not in html
    assert "another user's operation" in worker_row(html, "w-theirs")
    assert "0</b> rows in the last hour" in html


# --- the front page --------------------------------------------------------------------------


def test_the_front_page_of_a_visitor_is_where_to_go(client):
    html = client.get("/").content.decode()
    assert "Log in" in html and "lt-dashboard" not in html


def test_the_front_page_of_a_logged_in_user_is_the_dashboard(client, staff_user):
    client.force_login(staff_user)
    html = client.get("/").content.decode()
    assert "<h1>Dashboard</h1>" in html and 'data-live-url="/dashboard/live/"' in html
    assert "Running now" in html and "Workers" in html and "Recent failures" in html
    assert 'href="/admin/operations/operation/"' in html


# --- the live view ---------------------------------------------------------------------------


def test_the_live_view_is_the_panel_and_whether_something_moves(admin_client):
    body = admin_client.get(LIVE).json()
    assert body["active"] is False and "Nothing is queued or running." in body["html"]
    worker("w-1", held_by("w-1", file_name="people.csv"))
    body = admin_client.get(LIVE).json()
    assert body["active"] is True and "people.csv" in body["html"] and '<svg class="lt-chart"' in body["html"]


def test_the_live_view_answers_in_json_only_to_a_logged_in_get(client, user):
    response = client.get(LIVE)
    assert response.status_code == 403 and response.json()["message"]
    client.force_login(user)
    response = client.post(LIVE)
    assert response.status_code == 405 and response["Allow"] == "GET"
    assert client.get(LIVE).status_code == 200
    assert "no-cache" in client.get(LIVE)["Cache-Control"]


# --- queries ---------------------------------------------------------------------------------

# The session, the user, the counts by state, what runs, the failures, the workers (with what
# they hold), the stalled leases, the chart's minutes; the pages (a superuser's) add nothing.
DASHBOARD_QUERIES = 8


def populate(n: int) -> None:
    """n of each: running operations held by a live worker, stalled ones, failed ones with row
    errors, idle and silent workers, samples."""
    minute = heartbeats.current_minute()
    for i in range(n):
        op = held_by(f"w-{n}-{i}", file_name=f"{i}.csv", total_lines=100, lines_finished=i)
        worker(f"w-{n}-{i}", op)
        worker(f"s-{n}-{i}", held_by(f"s-{n}-{i}", expired=True), silent=True)
        held_by(f"gone-{n}-{i}", expired=True)
        failed = operation_in_state(S.FAILED, error=f"bad {i}", lines_failed=3)
        RowError.objects.bulk_create(RowError(operation=failed, line_number=k, reason="bad") for k in range(1, 4))
        ThroughputSample.objects.create(minute=minute - i % 60, rows=100, seconds=5, worker_id="w", operation=op)


def queries_of(client, url) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


@pytest.mark.parametrize("url", [INDEX, "/", LIVE])
def test_the_dashboard_costs_the_same_queries_for_1_or_30_of_everything(admin_client, url):
    admin_client.get(url)  # warm the caches (content types, permissions) that a first request fills
    populate(1)
    one = queries_of(admin_client, url)
    populate(30)
    many = queries_of(admin_client, url)
    print(f"queries of {url}: {one} (1 of each), {many} (30 of each)")
    assert one == many, (one, many)
    assert many == DASHBOARD_QUERIES


def test_a_poll_is_a_pinned_number_of_queries(admin_client, django_assert_num_queries):
    populate(30)
    admin_client.get(LIVE)
    with django_assert_num_queries(DASHBOARD_QUERIES):
        admin_client.get(LIVE)
