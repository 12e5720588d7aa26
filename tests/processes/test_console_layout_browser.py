"""The console's pages at a laptop's 1366 px and a phone's 390 px (headless Chromium, fixtures of
test_browser.py): the dashboard, the list, and the pages of a running import (a real worker held
at a chunk boundary), of a dry run with its totals by reason and of a failed import. On each,
nothing is cut off or scrolled sideways. The screenshots go under the test's tmp_path.
"""

import pytest

from operations.models import Operation, RowError
from tests.processes.test_browser import (  # noqa: F401 (fixtures)
    LAPTOP,
    LIST,
    PHONE,
    admin_login,
    assert_nothing_cut_off,
    browser,
    change_page,
    expect,
    import_held_at_1500_rows,
    operator,
    page,
    pytestmark,
    screenshot,
    server,
    with_bad_rows,
)
from tests.support import operation_in_state

S = Operation.State


def a_dry_run_and_a_failed_import(user) -> dict[str, Operation]:
    """A completed dry run into contacts with its totals by reason, and an import that failed
    with a long reason; each with a few row errors."""
    dry_run = operation_in_state(
        S.COMPLETED,
        owner=user,
        file_name="contacts-2026-12.csv",
        file_size=1_204_332,
        position=1_204_332,
        lines_finished=30_000,
        lines_failed=61,
        total_lines=30_000,
        options={"strict": False, "target": "contacts", "dry_run": True},
        checkpoint={
            "rejected_by_reason": {
                "E-mail is already in this file": 33,
                "Score is not an integer": 27,
                "E-mail is already in the table": 1,
            }
        },
    )
    failed = operation_in_state(
        S.FAILED,
        owner=user,
        file_name="orders-export-from-the-old-crm-system.csv",
        file_size=52_104_321,
        position=26_000_000,
        lines_finished=333,
        lines_failed=333,
        error="strict import: line 334: expected 12 fields, found 11 (a quoted field that never closes?)",
    )
    for op, reason, raw in (
        (dry_run, 'Score: "many" is not an integer', "Person 700,p700@example.com,Paris,many,a note"),
        (failed, "expected 12 fields, found 11", "1001,2026-11-30,ACME Corp,,,EUR,12.50,3,,shipped,"),
    ):
        RowError.objects.bulk_create(
            RowError(operation=op, line_number=line, reason=reason, raw=raw) for line in (700, 1400, 2100)
        )
    return {"dry_run": dry_run, "failed": failed}


@pytest.mark.parametrize("viewport", [LAPTOP, PHONE], ids=["1366px", "390px"])
def test_the_console_holds_at_1366_and_390_px(page, operator, workers, gate, tmp_path, viewport):  # noqa: F811
    made = a_dry_run_and_a_failed_import(operator)
    running, held = import_held_at_1500_rows(operator, workers, gate)
    page.set_viewport_size(viewport)
    width = viewport["width"]
    admin_login(page, operator)
    expect(page.locator(f'#lt-dashboard .lt-running tr[data-dash-op="{running.pk}"]')).to_contain_text("people.csv")
    assert_nothing_cut_off(page)
    screenshot(page, tmp_path, f"dashboard-{width}")

    page.goto(LIST)
    expect(page.locator(f'[data-op="{running.pk}"][data-field="counts"]')).to_contain_text("1,498 imported")
    assert_nothing_cut_off(page)
    screenshot(page, tmp_path, f"list-{width}")

    page.goto(change_page(running))
    expect(page.locator("[data-row-errors] tr")).to_have_count(2)
    assert_nothing_cut_off(page)
    screenshot(page, tmp_path, f"running-{width}")

    page.goto(change_page(made["dry_run"]))
    expect(page.locator(".lt-verdicts tbody tr").first).to_contain_text("E-mail is already in this file")
    assert_nothing_cut_off(page)
    screenshot(page, tmp_path, f"dry-run-{width}")

    page.goto(change_page(made["failed"]))
    expect(page.locator(".lt-run .errornote")).to_contain_text("expected 12 fields")
    assert_nothing_cut_off(page)
    screenshot(page, tmp_path, f"failed-{width}")
    held.open_all()
