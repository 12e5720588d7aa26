"""The dashboard in a real browser (headless Chromium, as tests/processes/test_browser.py): its
chart and its workers table with a real `process_tasks` worker holding an operation, held by the
gate at a chunk boundary, and the page following the worker's next chunk without a reload.

With LONG_TASK_DOCS_SCREENSHOTS=1 it also writes docs/console-dashboard.png (1366 px wide).
"""

import math
import os
import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.db.models import Sum
from django.utils import timezone

from operations import heartbeats
from operations.models import Operation, ThroughputSample, WorkerProcess
from tests.processes.test_browser import (  # noqa: F401 (fixtures)
    OVERFLOWING,
    PHONE,
    admin_login,
    browser,
    operator,  # noqa: F811
    screenshot,
    server,
    start_import,
    with_bad_rows,
)
from tests.support import exact_chunks, operation_in_state, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.processes, pytest.mark.django_db(transaction=True)]
S = Operation.State
DOCS = Path(__file__).resolve().parents[2] / "docs"
# A worker's id as the workers table shows it, of a worker that was killed (not in the table).
GONE_WORKER = "5f3a9c0e1b2d"
ROWS = 6000


@pytest.fixture
def wide_page(browser, server):  # noqa: F811
    context = browser.new_context(base_url=server, viewport={"width": 1366, "height": 900})
    context.set_default_timeout(15_000)
    yield context.new_page()
    context.close()


@pytest.fixture
def phone_page(browser, server):  # noqa: F811
    context = browser.new_context(base_url=server, viewport=PHONE)
    context.set_default_timeout(15_000)
    yield context.new_page()
    context.close()


def earlier_imports() -> None:
    """The last hour's earlier work, as workers would have sampled it: an import that ran from
    50 to 20 minutes ago, and one that failed."""
    done = operation_in_state(S.COMPLETED, file_name="customers-2026-11.csv", total_lines=2_400_000)
    minute = heartbeats.current_minute()
    ThroughputSample.objects.bulk_create(
        ThroughputSample(
            minute=minute - ago,
            rows=int(60 * (70_000 + 9_000 * math.sin(ago / 3))),
            seconds=60,
            worker_id=GONE_WORKER,
            operation=done,
        )
        for ago in range(20, 51)
    )
    operation_in_state(
        S.FAILED,
        file_name="orders-export.csv",
        lines_finished=333,
        lines_failed=333,
        error="strict import: line 334: expected 12 fields, found 11",
    )


def test_the_dashboard_shows_the_chart_and_a_real_worker_holding_an_import(
    wide_page,
    operator,  # noqa: F811
    workers,
    gate,
    tmp_path,  # noqa: F811
):
    page = wide_page
    held = gate("committed")
    # A long lease: held at the gate, the worker's lease stays alive (not stalled).
    process = workers.start(gate=held, lease_seconds=600, **exact_chunks(500))
    worker_id = workers.worker_id(process)
    earlier_imports()
    seeded = ThroughputSample.objects.aggregate(rows=Sum("rows"))["rows"]
    op = start_import(operator, with_bad_rows(ROWS))
    Operation.objects.filter(pk=op.pk).update(file_name="people.csv")
    held.wait_held(op.pk)
    # An operation whose worker was killed: its lease ran out, nobody holds it (seeded once the
    # real worker is held, so that its recovery sweep does not take it over).
    stalled = operation_in_state(
        S.RUNNING,
        lease_owner=GONE_WORKER,
        expired=True,
        file_name="invoices.csv",
        lines_finished=41_500,
        total_lines=120_000,
        position=4_000_000,
        file_size=11_500_000,
    )

    admin_login(page, operator)
    panel = page.locator("#lt-dashboard")
    worker_row = panel.locator(f'tr[data-worker="{worker_id}"]')
    wait_for(lambda: "line 500" in worker_row.inner_text(), what="the worker's first checkpoint")
    row_text = worker_row.inner_text()
    assert f"#{op.pk}" in row_text and "people.csv" in row_text and str(process.pid) in row_text
    assert re.search(r"in \d+m\d\ds|in \d+s", row_text), row_text  # its lease, alive
    assert "lt-stalled" not in (worker_row.get_attribute("class") or "")
    gone = panel.locator(f'tr[data-worker="{GONE_WORKER}"]')
    assert "lt-stalled" in gone.get_attribute("class") and f"#{stalled.pk}" in gone.inner_text()
    assert "stalled: expired" in gone.inner_text()
    # The chart: the earlier import's minutes and this one's, each with its rate.
    titles = panel.locator("svg.lt-chart rect.lt-hover title").all_text_contents()
    assert len(titles) == 60
    assert any(re.search(r"\b[6-7]\d,\d{3} rows/s", t) for t in titles), titles
    assert titles[-1] != titles[-1].split(" \u00b7 ")[0] + " \u00b7 0 rows/s", titles[-1]
    expect_running = panel.locator(f'.lt-running tr[data-dash-op="{op.pk}"]')
    assert "running" in expect_running.inner_text()
    assert "strict import: line 334" in panel.locator(".lt-failures").inner_text()

    # Live: the next chunk shows without a reload (the poll renders the panel again).
    page.evaluate("window.notReloaded = true")
    held.pass_through(op.pk, "committed", 1)
    wait_for(lambda: "line 1,000" in worker_row.inner_text(), what="the next checkpoint on the page")
    assert page.evaluate("window.notReloaded") is True
    screenshot(page, tmp_path, "dashboard")
    if os.environ.get("LONG_TASK_DOCS_SCREENSHOTS"):
        page.screenshot(path=DOCS / "console-dashboard.png", full_page=True)

    # `/` is the same dashboard for the logged-in operator.
    page.goto("/")
    page.evaluate("window.notReloaded = true")
    assert page.locator(f'#lt-dashboard tr[data-worker="{worker_id}"]').count() == 1
    screenshot(page, tmp_path, "front-page")
    held.open_all()
    wait_for(lambda: Operation.objects.get(pk=op.pk).state == S.COMPLETED, what="the import completed", timeout=60)
    # The chart follows too: every row of the import is in the last hour's count, without a reload.
    wait_for(lambda: hour_rows(page) == seeded + ROWS, what="the import's rows in the chart's count")
    wait_for(lambda: "idle" in page.locator(f'tr[data-worker="{worker_id}"]').inner_text(), what="the worker idle")
    assert page.evaluate("window.notReloaded") is True


def hour_rows(page) -> int:
    return int(page.locator("#lt-dashboard [data-dash=hour-rows]").inner_text().replace(",", ""))


def a_busy_hour() -> dict[str, Operation]:
    """What makes the dashboard wide: the last hour's work, an import with a long file name held
    by a worker on a long host name, a stalled one, a long reason of failure, an idle worker."""
    earlier_imports()
    now = timezone.now()
    running = operation_in_state(
        S.RUNNING,
        lease_owner="a1b2c3d4e5f6",
        file_name="customers-2026-export-from-the-old-crm-system-final-v2.csv",
        lines_finished=1_250_000,
        lines_failed=1_204,
        file_size=52_104_321,
        position=26_000_000,
        started_at=now - timedelta(minutes=12),
    )
    stalled = operation_in_state(
        S.RUNNING, lease_owner=GONE_WORKER, expired=True, file_name="invoices.csv", lines_finished=41_500
    )
    operation_in_state(
        S.FAILED,
        file_name="people.csv",
        lines_finished=996,
        error="line 7,501: database error: could not extend file: No space left on device",
    )
    since = now - timedelta(hours=3)
    for worker_id, operation in (("a1b2c3d4e5f6", running), ("0f9e8d7c6b5a", None)):
        WorkerProcess.objects.create(
            worker_id=worker_id,
            host="worker-03.eu-west-1.compute.internal",
            pid=123_456,
            started_at=since,
            last_seen=now,
            operation=operation,
        )
    return {"running": running, "stalled": stalled}


# OVERFLOWING (test_browser.py), for any page: the elements of `selector` beyond the window.
OVERFLOWING_IN = OVERFLOWING.replace('"#content *"', "selector").replace("() =>", "(selector) =>")


@pytest.mark.parametrize("url", ["/admin/", "/"], ids=["console", "front-page"])
def test_the_dashboard_on_a_phone_cuts_nothing_off(phone_page, operator, tmp_path, url):  # noqa: F811
    """390 px wide: its tables become cards (each cell a line with its column's name), so that
    nothing is cut off or scrolled sideways, and each still says what it says at 1366 px."""
    ops = a_busy_hour()
    page = phone_page
    admin_login(page, operator)
    page.goto(url)
    panel = page.locator("#lt-dashboard")
    page.wait_for_function("document.getElementById('lt-dashboard').hasAttribute('data-polled')")
    found = page.evaluate(OVERFLOWING_IN, "body *")
    assert found["scrollWidth"] <= found["width"] and not found["out"], found
    running = panel.locator(f'.lt-running tr[data-dash-op="{ops["running"].pk}"]')
    for text in ("customers-2026-export", "running", "1,248,796 imported"):
        assert running.get_by_text(text).first.is_visible(), text
    worker = panel.locator('tr[data-worker="a1b2c3d4e5f6"]')
    for text in ("worker-03.eu-west-1.compute.internal", "123456", f"#{ops['running'].pk}", "line 1,250,000"):
        assert worker.get_by_text(text).first.is_visible(), text
    assert "stalled: expired" in panel.locator(f'tr[data-worker="{GONE_WORKER}"]').inner_text()
    assert panel.locator(".lt-failures").get_by_text("No space left on device").is_visible()
    screenshot(page, tmp_path, f"dashboard-phone-{url.strip('/') or 'front'}")
