"""The operator console in a real browser (SPEC §10): headless Chromium (Debian's `chromium`)
driven by Playwright, against `manage.py runserver` and a real `process_tasks` worker on the
test database, the workers held by the gate (tests/gate.py) where a test watches or acts. Each
test saves screenshots under its tmp_path and prints where.

`make test PYTEST_ARGS="-m browser"` runs only these; without chromium they skip and say why
(`.ci/run` installs it).
"""

import os
import re
import shutil
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import global_settings
from django.utils import timezone

from operations import services
from operations.models import Operation, RowError, UploadedRow
from operations.state_machine import Actor
from tests.support import csv_bytes, exact_chunks, running_server, upload_file, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.processes, pytest.mark.django_db(transaction=True)]
S = Operation.State
PASSWORD = "console-pw-1"
# A bad row (a field short) every 1,000 rows, and one among the first (seen in the preview).
BAD_EVERY = 1000
BAD_EARLY = 5

CHROMIUM = shutil.which("chromium")
try:
    from playwright.sync_api import Page, expect, sync_playwright
except ImportError:  # pragma: no cover (requirements-dev.txt pins it)
    sync_playwright = None

else:
    expect.set_options(timeout=15_000)

if (CHROMIUM is None or sync_playwright is None) and os.environ.get("LONG_TASK_REQUIRE_BROWSER"):
    # CI installs chromium and sets this: there, a missing browser is a failure, not a skip.
    raise RuntimeError("LONG_TASK_REQUIRE_BROWSER is set but chromium or playwright is missing")
if CHROMIUM is None or sync_playwright is None:
    pytestmark.append(
        pytest.mark.skip(
            reason="browser tests need Debian's chromium (apt-get install chromium) and playwright "
            "(requirements-dev.txt); .ci/run installs both"
        )
    )


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    # Playwright's sync API keeps an asyncio loop running in this thread, which Django's ORM
    # takes for an async context; the tests' own queries are plain synchronous ones.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            # As root, without a GPU, and without Chromium's own calls home (this network is closed).
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield browser
        browser.close()
    del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]


@pytest.fixture
def server(media_root, tmp_path) -> str:
    with running_server(media_root=media_root, log_path=tmp_path / "server.log") as (_, port):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def operator(django_user_model, settings):
    # The server checks passwords with the real hashers, not the tests' fast one.
    settings.PASSWORD_HASHERS = global_settings.PASSWORD_HASHERS
    return django_user_model.objects.create_superuser("operator", password=PASSWORD)


@pytest.fixture
def page(browser, server, tmp_path, request):
    context = browser.new_context(base_url=server, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()
    yield page
    shot = tmp_path / f"{request.node.name}-last.png"
    page.screenshot(path=shot, full_page=True)
    print(f"screenshot (last state): {shot}")
    context.close()


def screenshot(page: "Page", tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=path, full_page=True)
    print(f"screenshot: {path}")
    return path


def admin_login(page: "Page", user, next_url: str = "/admin/") -> None:
    page.goto(f"/admin/login/?next={next_url}")
    page.fill("#id_username", user.username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(re.compile(re.escape(next_url) + "$"))


def number(page: "Page", field: str) -> int:
    """A figure of the operation's page, as the browser shows it now (e.g. "1,234")."""
    text = page.locator(f'.lt-run [data-field="{field}"]').inner_text()
    return int(text.replace(",", ""))


def state_of(page: "Page") -> str:
    return page.locator('.lt-run [data-field="state"]').get_attribute("data-state")


def bad_lines(rows: int) -> list[int]:
    return [BAD_EARLY, *range(BAD_EVERY, rows + 1, BAD_EVERY)]


def with_bad_rows(rows: int) -> bytes:
    lines = csv_bytes(rows).decode().splitlines(keepends=True)
    for n in bad_lines(rows):
        lines[n] = ",".join(lines[n].split(",")[:3]) + "\n"
    return "".join(lines).encode()


def start_import(user, content: bytes) -> Operation:
    actor = Actor.for_user(user)
    op = services.operation_register(op_type="Upload", actor=actor, data={})
    op, _ = services.operation_start(op_id=op.pk, actor=actor, data={}, files={"file": upload_file(content)})
    return op


# --- tests -----------------------------------------------------------------------------------


def test_import_watch_pause_and_resume_from_the_admin(page, operator, workers, gate, tmp_path):
    """Log in, import a file through the admin form, land on its page, see the figures grow
    without a reload, pause (the worker's acknowledgement shows), resume to completion. The
    worker is held between chunks (of 500 rows) where the test watches or acts."""
    held = gate("committed")
    workers.start(gate=held, **exact_chunks(500))
    rows = 3000
    admin_login(page, operator)

    page.goto("/admin/operations/operation/")
    page.click("text=Import CSV")
    page.wait_for_url("**/import/")
    page.set_input_files(
        "#id_file", files=[{"name": "people.csv", "mimeType": "text/csv", "buffer": with_bad_rows(rows)}]
    )
    # The preview: the first rows as the import would take them (a dry run, nothing written).
    expect(page.locator("#lt-preview")).to_contain_text("the first 20 rows, 19 fine, 1 rejected")
    expect(page.locator("#lt-preview tr.lt-rejected")).to_contain_text("rejected: expected 4 fields, found 3")
    expect(page.locator("#lt-import-error")).to_be_hidden()
    assert not Operation.objects.exists()
    screenshot(page, tmp_path, "1-import-form")
    page.click("#lt-import-submit")
    page.wait_for_url(re.compile(r"/admin/operations/operation/\d+/change/$"))
    op_id = int(re.search(r"/operation/(\d+)/change/", page.url).group(1))
    expect(page.locator(".messagelist")).to_contain_text(f"Import #{op_id} started: people.csv")

    # Live: the figures grow while the page stays as it was loaded.
    page.evaluate("window.notReloaded = true")
    held.wait_held(op_id)
    wait_for(lambda: number(page, "imported") > 0, what="the first rows on the page")
    first, bar_first = (
        number(page, "imported"),
        float(page.locator('.lt-run [data-field="bar"]').get_attribute("value")),
    )
    held.pass_through(op_id, "committed", 1)
    wait_for(lambda: number(page, "imported") > first, what="the next chunk on the page")
    second, bar_second = (
        number(page, "imported"),
        float(page.locator('.lt-run [data-field="bar"]').get_attribute("value")),
    )
    assert second > first and bar_second > bar_first, (first, second, bar_first, bar_second)
    assert page.evaluate("window.notReloaded") is True
    screenshot(page, tmp_path, "2-running")
    page.screenshot(path=tmp_path / "2-running-top.png")  # the first screen

    # Pause: the request answers "pausing"; the poller shows the worker's acknowledgement.
    page.click('button[data-verb="pause"]')
    wait_for(lambda: Operation.objects.get(pk=op_id).state == S.PAUSING, what="pausing")
    held.open_all()
    expect(page.locator(".lt-run [data-field=state]")).to_have_attribute("data-state", "paused")
    expect(page.locator('button[data-verb="resume"]')).to_be_enabled()
    finished = number(page, "finished")
    time.sleep(0.5)  # a worker that went on would commit chunks meanwhile
    page.reload()
    assert state_of(page) == S.PAUSED
    assert number(page, "finished") == finished == Operation.objects.get(pk=op_id).lines_finished == 1_000
    expect(page.locator(".lt-events")).to_contain_text(f"stopped at line {finished:,}")
    screenshot(page, tmp_path, "3-paused")

    # Resume: it continues from its checkpoint and completes, still without a reload.
    page.click('button[data-verb="resume"]')
    page.evaluate("window.notReloaded = true")
    expect(page.locator(".lt-run [data-field=state]")).to_have_attribute("data-state", "completed", timeout=60_000)
    assert page.evaluate("window.notReloaded") is True
    failed = len(bad_lines(rows))
    assert number(page, "imported") == rows - failed
    assert number(page, "failed") == failed
    assert page.locator('.lt-run [data-field="percent"]').inner_text() == "100.0%"
    assert UploadedRow.objects.filter(operation_id=op_id).count() == rows - failed
    screenshot(page, tmp_path, "4-completed")

    # The record: events to the second, row errors counted like the counter, both downloads.
    page.reload()
    expect(page.locator(".lt-events")).to_contain_text("completed")
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", page.locator(".lt-events").inner_text())
    expect(page.locator(".field-row_error_count")).to_contain_text(f"{failed} (all of them")
    with page.expect_download() as download:
        page.click("text=All row errors (CSV)")
    lines = Path(download.value.path()).read_text().splitlines()
    assert len(lines) == 1 + failed and lines[0] == "line_number,reason,raw"
    with page.expect_download() as download:
        page.click("text=Download the file")
    assert Path(download.value.path()).read_bytes() == with_bad_rows(rows)
    screenshot(page, tmp_path, "5-record")


def test_list_counts_by_state_and_live_rows(page, operator, workers, gate, tmp_path):
    """The list shows the counts by state and updates its rows without a reload; a bar only
    where it means progress."""
    held = gate("committed")
    workers.start(gate=held, **exact_chunks(500))
    running = start_import(operator, csv_bytes(3000))
    registered = services.operation_register(op_type="Upload", actor=Actor.for_user(operator), data={})
    held.wait_held(running.pk)
    admin_login(page, operator, "/admin/operations/operation/")

    row = page.locator(f'tr:has([data-op="{running.pk}"])')
    wait_for(lambda: "imported" in row.inner_text() and not row.inner_text().startswith("0 "), what="a row")
    expect(page.locator('[data-count="registered"]')).to_have_text("1")
    first = int(re.search(r"([\d,]+) imported", row.inner_text()).group(1).replace(",", ""))
    held.pass_through(running.pk, "committed", 1)  # still running: held after its second chunk
    wait_for(
        lambda: int(re.search(r"([\d,]+) imported", row.inner_text()).group(1).replace(",", "")) > first,
        what="the count to grow on the list",
    )
    # Registered: no bar (none is shown without a percentage, and none is indeterminate).
    assert page.locator(f'progress[data-op="{registered.pk}"]').is_hidden()
    assert page.locator(f'progress[data-op="{running.pk}"]').is_visible()
    screenshot(page, tmp_path, "list-live")

    # A count link filters, and the filter stays while the page polls.
    page.click('.lt-counts a:has([data-count="running"])')
    page.wait_for_url("**state__exact=running")
    assert page.locator("#result_list tbody tr").count() == 1
    held.open_all()
    expect(page.locator(f'tr:has([data-op="{running.pk}"]) [data-field=state]')).to_have_attribute(
        "data-state", "completed", timeout=60_000
    )
    assert "state__exact=running" in page.url
    screenshot(page, tmp_path, "list-filtered")


def test_terminate_from_the_operations_page(page, operator, workers, gate, tmp_path):
    """Terminate asks for confirmation, forces a running operation, and the page shows the
    worker's acknowledgement: terminated, nothing left."""
    held = gate("committed")
    workers.start(gate=held, **exact_chunks(500))
    op = start_import(operator, csv_bytes(5000))
    held.wait_held(op.pk)
    admin_login(page, operator, f"/admin/operations/operation/{op.pk}/change/")
    assert state_of(page) == S.RUNNING

    page.click('button[data-verb="terminate"]')
    expect(page.locator("#content-main")).to_contain_text("It is running")
    screenshot(page, tmp_path, "terminate-confirm")
    page.click("text=Yes, terminate")
    page.wait_for_url(f"**/operation/{op.pk}/change/")
    held.open_all()
    expect(page.locator(".lt-run [data-field=state]")).to_have_attribute("data-state", "terminated", timeout=30_000)
    assert number(page, "imported") == 0 and number(page, "finished") == 0
    assert page.locator('.lt-run [data-field="bar"]').is_hidden()
    for verb in ("pause", "resume", "terminate"):
        expect(page.locator(f'button[data-verb="{verb}"]')).to_be_disabled()
    assert not UploadedRow.objects.filter(operation_id=op.pk).exists()
    assert not RowError.objects.filter(operation_id=op.pk).exists()
    assert not Operation.objects.get(pk=op.pk).file
    screenshot(page, tmp_path, "terminated")


def test_import_form_shows_the_apis_refusal(page, operator, tmp_path):
    """An empty file: the form says why (the API's 400 message) and nothing is left running."""
    admin_login(page, operator, "/admin/operations/operation/import/")
    page.set_input_files("#id_file", files=[{"name": "empty.csv", "mimeType": "text/csv", "buffer": b""}])
    # The preview says so at once; the import itself (register, start refused, withdrawn) too.
    expect(page.locator("#lt-import-error")).to_have_text("The file is empty")
    with page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/import/")) as answer:
        page.click("#lt-import-submit")
    assert answer.value.status == 400
    expect(page.locator("#lt-import-error")).to_have_text("The file is empty")
    assert page.url.endswith("/import/")
    assert not Operation.objects.exclude(state=S.TERMINATED).exists()
    screenshot(page, tmp_path, "import-refused")


def test_front_door_and_an_import_started_from_the_api_docs(page, operator, workers, tmp_path):
    """/ leads to the console and the docs; the docs ask a browser to log in; "Try it out" on
    start sends a file (the schema types it binary) and the import runs."""
    workers.start()
    page.goto("/")
    expect(page.locator("body")).to_contain_text("Operator console")
    screenshot(page, tmp_path, "front-door")
    page.click("text=API documentation")
    page.wait_for_url("**/api/auth/login/?next=/api/docs/")
    page.fill("#id_username", operator.username)
    page.fill("#id_password", PASSWORD)
    page.click("#submit-id-submit")
    page.wait_for_url("**/api/docs/")

    op = services.operation_register(op_type="Upload", actor=Actor.for_user(operator), data={})
    block = page.locator("#operations-api-api_operations_start_create")
    block.locator(".opblock-summary").click()
    block.locator(".try-out__btn").click()
    block.locator('tr[data-param-name="id"] input').fill(str(op.pk))
    block.locator("input[type=file]").set_input_files(
        files=[{"name": "docs.csv", "mimeType": "text/csv", "buffer": csv_bytes(500)}]
    )
    block.locator(".execute").click()
    expect(block.locator(".live-responses-table tr.response .response-col_status")).to_have_text("202")
    block.scroll_into_view_if_needed()
    block.screenshot(path=tmp_path / "api-docs-started.png")
    print(f"screenshot: {tmp_path / 'api-docs-started.png'}")
    wait_for(lambda: Operation.objects.get(pk=op.pk).state == S.COMPLETED, what="the import started from the docs")
    assert Operation.objects.get(pk=op.pk).options == {"strict": False}  # the schema's default, not a sample
    assert UploadedRow.objects.filter(operation_id=op.pk).count() == 500


# --- the console follows the work: a list takes in operations that start after it loaded, and
# an operation's page follows its operation from the state it was opened in, with its buttons,
# banners, row errors and links, all without a reload ----------------------------------------

LIST = "/admin/operations/operation/"


def change_page(op: Operation) -> str:
    return f"{LIST}{op.pk}/change/"


def mark_not_reloaded(page) -> None:
    """A flag that a reload would lose: the page followed its operation by polling alone."""
    page.evaluate("window.notReloaded = true")


def not_reloaded(page) -> bool:
    return page.evaluate("window.notReloaded") is True


def state_badge(page, op: Operation):
    return page.locator(f'.lt-run [data-op="{op.pk}"][data-field="state"]')


def test_list_takes_in_operations_that_start_after_it_loaded(page, operator, workers, gate, tmp_path):
    """Loaded with nothing active (it polls slowly then, and never stops), the list shows a new
    operation at the top as it appears, follows it, and keeps its counts; with a filter, only the
    operations that the filter shows."""
    held = gate("committed")
    workers.start(gate=held, **exact_chunks(500))
    done = Operation.objects.create(state=S.COMPLETED, owner=operator, file_name="old.csv")
    admin_login(page, operator, LIST)
    mark_not_reloaded(page)
    expect(page.locator('[data-count="running"]')).to_have_text("0")

    first = start_import(operator, csv_bytes(3000))
    held.wait_held(first.pk)
    top = page.locator("#result_list tbody tr").first
    expect(top.locator(f'[data-op="{first.pk}"][data-field="state"]')).to_have_attribute("data-state", "running")
    expect(page.locator('[data-count="running"]')).to_have_text("1")
    assert page.locator("#result_list tbody tr").count() == 2
    expect(page.locator("#changelist-form .paginator")).to_contain_text("2 operations")
    # The actions take it in: counted, and selected by "select all".
    expect(page.locator("span.action-counter")).to_have_text("0 of 2 selected")
    page.check("#action-toggle")
    expect(page.locator("span.action-counter")).to_have_text("2 of 2 selected")
    assert page.locator("tr input.action-select:checked").count() == 2
    page.uncheck("#action-toggle")
    assert page.locator(f'#result_list tbody tr:nth-child(2) [data-op="{done.pk}"]').count() > 0
    # The row is the list's own: its checkbox, its link, its live figures.
    expect(top.locator("input.action-select")).to_have_value(str(first.pk))
    expect(top.locator(f'a[href*="/operation/{first.pk}/change/"]')).to_have_count(1)
    held.pass_through(first.pk, "committed", 1)
    expect(top.locator('[data-field="counts"]')).to_contain_text("1,000 imported")
    assert not_reloaded(page)
    screenshot(page, tmp_path, "list-new-operation")

    # Filtered to the queued ones: an operation that starts shows up; the other filters' do not.
    page.goto(f"{LIST}?state__exact=queued")
    mark_not_reloaded(page)
    queued = start_import(operator, csv_bytes(10))  # waits: the only worker is held on `first`
    registered = services.operation_register(op_type="Upload", actor=Actor.for_user(operator), data={})
    expect(page.locator(f'#result_list [data-op="{queued.pk}"][data-field="state"]')).to_have_attribute(
        "data-state", "queued"
    )
    expect(page.locator('[data-count="registered"]')).to_have_text("1")
    assert page.locator(f'#result_list [data-op="{registered.pk}"]').count() == 0
    expect(page.locator("#changelist-form .paginator")).to_contain_text("1 operation")
    assert not_reloaded(page)
    screenshot(page, tmp_path, "list-filtered-new-operation")
    held.open_all()


def test_page_opened_while_registered_follows_its_operation_and_pauses_it(page, operator, workers, gate, tmp_path):
    """Opened while registered (Pause disabled), the page follows its operation to running and
    Pause works; the "is pausing" banner goes once the worker has paused."""
    held = gate("committed")
    workers.start(gate=held, **exact_chunks(500))
    actor = Actor.for_user(operator)
    op = services.operation_register(op_type="Upload", actor=actor, data={})
    admin_login(page, operator, change_page(op))
    expect(state_badge(page, op)).to_have_attribute("data-state", "registered")
    expect(page.locator('button[data-verb="pause"]')).to_be_disabled()
    expect(page.locator(".lt-run [data-when=download]")).to_be_hidden()
    mark_not_reloaded(page)
    screenshot(page, tmp_path, "page-registered")

    services.operation_start(op_id=op.pk, actor=actor, data={}, files={"file": upload_file(csv_bytes(3000))})
    held.wait_held(op.pk)
    expect(state_badge(page, op)).to_have_attribute("data-state", "running")
    expect(page.locator('button[data-verb="pause"]')).to_be_enabled()
    expect(page.locator(".lt-run [data-when=download]")).to_be_visible()
    expect(page.locator(".lt-title")).to_contain_text(f"Upload #{op.pk} \u00b7 data.csv")
    wait_for(lambda: number(page, "imported") == 500, what="the first chunk on the page")
    assert not_reloaded(page)
    screenshot(page, tmp_path, "page-followed-to-running")

    page.click('button[data-verb="pause"]')
    expect(page.locator(".messagelist")).to_contain_text(f"Pause requested: #{op.pk} is pausing")
    expect(state_badge(page, op)).to_have_attribute("data-state", "pausing")
    mark_not_reloaded(page)
    screenshot(page, tmp_path, "page-pausing-banner")
    held.open_all()
    expect(state_badge(page, op)).to_have_attribute("data-state", "paused")
    expect(page.locator(".messagelist")).to_have_count(0)  # no stale "is pausing"
    expect(page.locator('button[data-verb="resume"]')).to_be_enabled()
    expect(page.locator('button[data-verb="pause"]')).to_be_disabled()
    expect(page.locator(".object-tools")).to_have_count(0)  # no History button beside the card's own
    assert not_reloaded(page)
    screenshot(page, tmp_path, "page-paused-no-banner")


def open_page_of_a_held_import(page, operator, workers, gate):
    """An import of 3,000 rows with bad rows at 5, 1,000, 2,000 and 3,000, its worker held after
    its first chunk of 500, and its page open (marked, to tell a reload)."""
    held = gate("committed")
    workers.start(gate=held, **exact_chunks(500))
    op = start_import(operator, with_bad_rows(3000))
    held.wait_held(op.pk)
    admin_login(page, operator, change_page(op))
    mark_not_reloaded(page)
    return op, held


def test_row_errors_appear_on_the_page_as_they_are_recorded(page, operator, workers, gate, tmp_path):
    """The row-errors table grows with the import (a bad row at lines 5, 1,000, 2,000, 3,000)
    without a reload."""
    op, held = open_page_of_a_held_import(page, operator, workers, gate)
    rows = page.locator("[data-row-errors] tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("expected 4 fields, found 3")

    held.pass_through(op.pk, "committed", 2)  # lines 501 to 1,500: the bad line 1,000
    expect(rows).to_have_count(2)
    expect(rows.nth(1).locator("td").first).to_have_text("1000")
    screenshot(page, tmp_path, "row-errors-growing")
    held.open_all()
    expect(state_badge(page, op)).to_have_attribute("data-state", "completed", timeout=60_000)
    expect(rows).to_have_count(4)
    assert [rows.nth(i).locator("td").first.inner_text() for i in range(4)] == ["5", "1000", "2000", "3000"]
    assert number(page, "failed") == 4
    assert not_reloaded(page)
    screenshot(page, tmp_path, "row-errors-complete")


def test_no_download_link_once_terminated(page, operator, workers, gate, tmp_path):
    """Terminated from elsewhere (the API, say) while its page is open: the page follows to
    terminated, drops the download link and the row errors, and says why there is no file."""
    op, held = open_page_of_a_held_import(page, operator, workers, gate)
    expect(page.locator(".lt-run a", has_text="Download the file")).to_be_visible()
    expect(page.locator("[data-row-errors] tr")).to_have_count(1)

    services.operation_terminate(op_id=op.pk, actor=Actor.for_user(operator), force=True)
    held.open_all()
    expect(state_badge(page, op)).to_have_attribute("data-state", "terminated", timeout=30_000)
    expect(page.locator(".lt-run a", has_text="Download the file")).to_be_hidden()
    expect(page.locator(".field-input_file a")).to_be_hidden()
    expect(page.locator(".field-input_file")).to_contain_text("This operation has no file to download")
    expect(page.locator("[data-row-errors] tr")).to_have_count(0)
    for verb in ("pause", "resume", "terminate"):
        expect(page.locator(f'button[data-verb="{verb}"]')).to_be_disabled()
    assert not_reloaded(page)
    # Terminated is final: the page has stopped polling.
    expect(page.locator("#lt-console")).to_have_attribute("data-settled", "true")
    screenshot(page, tmp_path, "terminated-no-download")
    assert re.search(r"terminated", page.locator(".lt-events").inner_text())


def test_a_hidden_list_does_not_poll_and_polls_at_once_when_shown_again(page, operator, tmp_path):
    """Polls only while it is visible (document.visibilityState): none while hidden, one at once
    when shown again, which brings what happened meanwhile."""
    start_import(operator, csv_bytes(10))  # no worker: it stays queued, and the list polls fast
    admin_login(page, operator, LIST)
    polls = []
    page.on("request", lambda request: polls.append(request.url) if "/live/?" in request.url else None)
    page.wait_for_function("document.getElementById('lt-console').hasAttribute('data-polled')")
    visibility = """state => {
        Object.defineProperty(document, "visibilityState", { value: state, configurable: true });
        document.dispatchEvent(new Event("visibilitychange"));
    }"""
    page.evaluate(visibility, "hidden")
    page.wait_for_timeout(500)  # a poll already in flight may end
    polls.clear()
    op = start_import(operator, csv_bytes(10))
    page.wait_for_timeout(3 * 1000)  # three fast polls' time, were the page polling
    assert polls == [], polls
    assert page.locator(f'#result_list [data-op="{op.pk}"]').count() == 0
    with page.expect_request(lambda request: "/live/?" in request.url, timeout=1000):
        page.evaluate(visibility, "visible")
    expect(page.locator(f'#result_list [data-op="{op.pk}"][data-field="state"]')).to_have_attribute(
        "data-state", "queued"
    )
    screenshot(page, tmp_path, "list-shown-again")


# --- an operator's tool: titles, the created filter, bulk resume, a layout that holds at a
# laptop's 1366 px and at a phone's 390 px ----------------------------------------------------

LAPTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}

# Every element of the page that ends beyond the window's right edge (or starts left of it):
# what a reader would have to scroll sideways to see, or could not see at all.
OVERFLOWING = """() => {
    const width = document.documentElement.clientWidth;
    const out = [];
    for (const el of document.querySelectorAll("#content *")) {
        const box = el.getBoundingClientRect();
        if (box.width && (box.right > width + 1 || box.left < -1)) out.push(el.tagName + "." + el.className);
    }
    return {width, scrollWidth: document.documentElement.scrollWidth, out: out.slice(0, 10)};
}"""


# The elements of the first selector whose box overlaps one of the second's.
OVERLAPPING = """([these, those]) => {
    const boxes = [...document.querySelectorAll(those)].map(el => el.getBoundingClientRect());
    return [...document.querySelectorAll(these)].filter(el => {
        const a = el.getBoundingClientRect();
        return boxes.some(b => a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom);
    }).map(el => el.textContent.trim());
}"""


def operations_to_tell_apart(user) -> dict[str, Operation]:
    """A list's worth: a failed import with its reason, a long file name, a paused one, a
    completed one, one being terminated, a registered one."""
    made = {}
    for state, name, error in [
        (S.COMPLETED, "customers-2026-export-from-the-old-crm-system.csv", ""),
        (S.FAILED, "people.csv", "line 7,501: database error: could not extend file: No space left on device"),
        (S.PAUSED, "orders.csv", ""),
        (S.TERMINATING, "mistake.csv", ""),
        (S.REGISTERED, "", ""),
    ]:
        made[state] = Operation.objects.create(
            state=state,
            owner=user,
            file_name=name,
            file_size=52_104_321 if name else None,
            position=26_000_000 if name else 0,
            lines_finished={S.FAILED: 996, S.REGISTERED: 0}.get(state, 250_000),
            lines_failed=0 if state == S.REGISTERED else 4,
            error=error,
            options={"strict": False},
            started_at=None if state == S.REGISTERED else timezone.now() - timedelta(minutes=12),
            finished_at=timezone.now() - timedelta(minutes=2) if state in (S.COMPLETED, S.FAILED) else None,
        )
        Operation.objects.filter(pk=made[state].pk).update(created_at=timezone.now() - timedelta(minutes=13))
    return made


def assert_nothing_cut_off(page: "Page") -> None:
    found = page.evaluate(OVERFLOWING)
    assert found["scrollWidth"] <= found["width"] and not found["out"], found


def test_the_list_on_a_phone_shows_every_column_without_cutting_any(page, operator, tmp_path):
    """390 px wide: the rows become cards; nothing is cut off or scrolled sideways, and each
    operation still shows its file, state (and why it failed), progress, rate and age."""
    ops = operations_to_tell_apart(operator)
    page.set_viewport_size(PHONE)
    admin_login(page, operator, LIST)
    assert page.title() == "Operations | long_task"
    page.wait_for_function("document.getElementById('lt-console').hasAttribute('data-polled')")
    assert_nothing_cut_off(page)
    failed = page.locator(f'#result_list tr:has([data-op="{ops[S.FAILED].pk}"])')
    for text in ("people.csv", "failed", "No space left on device", "992 imported", "ago"):
        expect(failed).to_contain_text(text)
        assert failed.get_by_text(text).first.is_visible(), text
    screenshot(page, tmp_path, "list-phone")


def import_held_at_1500_rows(operator, workers, gate):
    """people.csv (3,000 rows, 500 a chunk) imported by a real worker, held after its third
    chunk's commit: 1,500 rows read, the bad lines 5 and 1,000 among them. The import and its gate."""
    held = gate("committed")
    workers.start(gate=held, **exact_chunks(500))
    actor = Actor.for_user(operator)
    running = services.operation_register(op_type="Upload", actor=actor, data={"strict": "false"})
    files = {"file": upload_file(with_bad_rows(3000), "people.csv")}
    services.operation_start(op_id=running.pk, actor=actor, data={}, files=files)
    held.wait_held(running.pk)
    held.pass_through(running.pk, "committed", 2)
    return running, held


def test_the_list_and_a_page_hold_at_1366_px_with_badges_on_one_line(page, operator, workers, gate, tmp_path):
    """A laptop's screen: with an import running beside operations in every other kind of
    state, the list and the import's page fit the window, state badges each on one line; the
    page says what it is, its size and options in words. (Its screenshots are docs/'s.)"""
    ops = operations_to_tell_apart(operator)
    running, held = import_held_at_1500_rows(operator, workers, gate)
    page.set_viewport_size(LAPTOP)
    admin_login(page, operator, LIST)
    expect(page.locator(f'[data-op="{running.pk}"][data-field="counts"]')).to_contain_text("1,498 imported")
    assert_nothing_cut_off(page)
    badges = page.eval_on_selector_all(
        "#result_list .lt-state",
        "els => els.map(el => el.getBoundingClientRect().height / parseFloat(getComputedStyle(el).fontSize))",
    )
    assert len(badges) == len(ops) + 1 and max(badges) < 2, badges  # one line each (two: ~2.4 font sizes)
    assert not page.evaluate(OVERLAPPING, [".lt-counts a", ".object-tools a"])
    page.screenshot(path=tmp_path / "list-laptop.png")
    print(f"screenshot: {tmp_path / 'list-laptop.png'}")

    page.goto(change_page(running))
    assert page.title() == f"Upload #{running.pk} \u00b7 people.csv | long_task"
    expect(page.locator("h1")).to_have_text(f"Upload #{running.pk} \u00b7 people.csv")
    expect(page.locator(".field-size")).to_contain_text("150.5 kB")
    expect(page.locator(".field-options_shown")).to_contain_text("strict: no")
    expect(page.locator("[data-row-errors] tr")).to_have_count(2)
    assert_nothing_cut_off(page)
    page.screenshot(path=tmp_path / "page-laptop.png")
    print(f"screenshot: {tmp_path / 'page-laptop.png'}")
    page.goto(change_page(ops[S.FAILED]))
    expect(page.locator(".field-size")).to_contain_text("52.1 MB")
    expect(page.locator(".lt-run .errornote")).to_contain_text("No space left on device")
    assert_nothing_cut_off(page)
    held.open_all()


def test_the_created_filter_narrows_the_list_by_day_and_by_range(page, operator, tmp_path):
    Operation.objects.create(state=S.COMPLETED, owner=operator, file_name="today.csv")
    old = Operation.objects.create(state=S.COMPLETED, owner=operator, file_name="old.csv")
    Operation.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=20))
    page.set_viewport_size(LAPTOP)
    admin_login(page, operator, LIST)
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(2)
    page.click("#changelist-filter >> text=Today")
    page.wait_for_url(re.compile(r"created_at__gte="))
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("today.csv")

    page.goto(LIST)
    ago = str(timezone.localdate() - timedelta(days=25))
    page.fill('.lt-date-range input[name="created_from"]', ago)
    page.fill('.lt-date-range input[name="created_to"]', str(timezone.localdate() - timedelta(days=10)))
    page.click(".lt-date-range button")
    page.wait_for_url(re.compile(r"created_from=" + ago))
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("old.csv")
    expect(page.locator('.lt-date-range input[name="created_from"]')).to_have_value(ago)
    screenshot(page, tmp_path, "list-created-range")


def test_bulk_resume_of_the_failed_operations(page, operator, tmp_path):
    """Filter the failed ones, select all, Resume: each goes through the state machine (queued,
    from its checkpoint), and the list says so."""
    failed = [
        Operation.objects.create(state=S.FAILED, owner=operator, file_name=f"{n}.csv", error="lost", lines_finished=500)
        for n in range(3)
    ]
    Operation.objects.create(state=S.COMPLETED, owner=operator)
    page.set_viewport_size(LAPTOP)
    admin_login(page, operator, f"{LIST}?state__exact=failed")
    expect(page.locator("#result_list tbody tr")).to_have_count(3)
    page.check("#action-toggle")
    page.select_option('select[name="action"]', "resume")
    page.click('button[name="index"]')
    expected = ", ".join(f"#{op.pk} is queued" for op in failed)
    expect(page.locator(".messagelist")).to_contain_text(f"Resumed: {expected}.")
    assert (
        list(Operation.objects.filter(pk__in=[op.pk for op in failed]).values_list("state", flat=True))
        == [S.QUEUED] * 3
    )
    assert Operation.objects.get(pk=failed[0].pk).lines_finished == 500
    page.goto(LIST)
    expect(page.locator('[data-count="queued"]')).to_have_text("3")
    screenshot(page, tmp_path, "bulk-resumed")
