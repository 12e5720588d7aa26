"""The console's import into a target in a real browser (SPEC §10, §13): choose the target, see
the mapping the header gives, check the whole file (a dry run by a real worker), then import
it from the dry run's page without sending the file again. Fixtures and helpers are
test_browser.py's; screenshots go under the test's tmp_path."""

import csv
import io
import re

from contacts.models import Contact
from operations import services
from operations.models import Operation, RowError
from operations.state_machine import Actor
from tests.processes.test_browser import (  # noqa: F401 (fixtures)
    admin_login,
    browser,
    expect,
    operator,
    page,
    pytestmark,
    screenshot,
    server,
)
from tests.support import exact_chunks, upload_file

S = Operation.State
ROWS = 3000


def contacts_file() -> bytes:
    """ROWS contacts under a header of other spellings; a bad score every 700 rows, an e-mail
    that comes back 1,000 rows later every 900 rows, and one (line 2) already in the table."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["Name", "E-mail", "City", "Score", "Notes"])
    for line in range(1, ROWS + 1):
        email = f"p{line - 1000}@example.com" if line > 1000 and line % 900 == 0 else f"p{line}@example.com"
        score = "many" if line % 700 == 0 else str(line)
        writer.writerow([f"Person {line}", email, "Paris", score, "a note that no field takes"])
    return out.getvalue().encode()


def verdicts(op_id: int) -> list[tuple[int, str]]:
    return list(
        RowError.objects.filter(operation_id=op_id).order_by("line_number").values_list("line_number", "reason")
    )


def test_choose_a_target_check_the_whole_file_and_import_it(page, operator, workers, tmp_path):  # noqa: F811
    Contact.objects.create(name="Already here", email="p2@example.com")
    workers.start(**exact_chunks(500))
    content = contacts_file()
    admin_login(page, operator)

    page.goto("/admin/operations/operation/import/")
    page.select_option("#id_target", "contacts")
    page.set_input_files("#id_file", files=[{"name": "people.csv", "mimeType": "text/csv", "buffer": content}])
    mapping = page.locator("#lt-mapping")
    expect(mapping).to_contain_text("fields of target contacts")
    expect(mapping.locator("tr", has_text="email")).to_contain_text("E-mail")
    expect(mapping.locator("tr", has_text="signup_date")).to_contain_text("left empty")
    expect(mapping).to_contain_text("Not imported: Notes")
    checked_text = page.locator("#lt-preview .lt-checked")
    # An estimate: the first rows' e-mails and scores are shorter than the later ones'.
    expect(checked_text).to_contain_text(re.compile(r"the first 20 rows of people\.csv \(~3,[0-4]00 rows, estimated"))
    screenshot(page, tmp_path, "1-target-and-mapping")

    # A header without the required column: the mapping says so before anything is sent.
    no_name = content.replace(b"Name,E-mail", b"Nom,E-mail", 1)
    page.set_input_files("#id_file", files=[{"name": "no-name.csv", "mimeType": "text/csv", "buffer": no_name}])
    expect(mapping.locator("tr.lt-missing")).to_contain_text("missing: required")
    expect(mapping).to_contain_text("missing required columns: name")
    expect(checked_text).to_contain_text("The header does not fit target contacts")
    expect(page.locator("#lt-preview .lt-check-whole")).to_have_count(0)
    screenshot(page, tmp_path, "2-missing-column")
    page.set_input_files("#id_file", files=[{"name": "people.csv", "mimeType": "text/csv", "buffer": content}])
    expect(checked_text).to_contain_text("people.csv")

    page.click("#lt-preview .lt-check-whole")
    page.wait_for_url(re.compile(r"/admin/operations/operation/\d+/change/$"))
    checked = int(re.search(r"/operation/(\d+)/change/", page.url).group(1))
    expect(page.locator(".messagelist")).to_contain_text(f"Dry run #{checked} started: people.csv")
    expect(page.locator(".lt-run [data-field=state]")).to_have_attribute("data-state", "completed", timeout=90_000)
    expect(page.locator('button[data-verb="import"]')).to_be_enabled()
    assert Contact.objects.count() == 1  # the dry run wrote nothing
    # Its totals by reason came with the page's polls, without a reload.
    expect(page.locator(".lt-verdicts")).to_contain_text("E-mail is already in this file")
    expect(page.locator(".lt-verdicts")).to_contain_text("E-mail is already in the table")
    expect(page.locator(".lt-verdicts")).to_contain_text("Score is not an integer")
    screenshot(page, tmp_path, "3-dry-run-completed")

    page.click('button[data-verb="import"]')
    page.wait_for_url(re.compile(r"/admin/operations/operation/\d+/change/$"))
    imported_by = int(re.search(r"/operation/(\d+)/change/", page.url).group(1))
    assert imported_by != checked
    expect(page.locator(".messagelist")).to_contain_text(f"Import #{imported_by} started from the file dry run")
    expect(page.locator(".lt-run [data-field=state]")).to_have_attribute("data-state", "completed", timeout=90_000)
    screenshot(page, tmp_path, "4-imported")

    rejected = verdicts(checked)
    assert rejected and verdicts(imported_by) == rejected
    assert Contact.objects.filter(import_operation=imported_by).count() == ROWS - len(rejected)
    assert Operation.objects.get(pk=checked).file.name == ""
    assert Operation.objects.get(pk=imported_by).options["checked_by"] == checked


def test_a_dry_runs_totals_by_reason_grow_on_its_page_as_it_reads(page, operator, workers, gate, tmp_path):  # noqa: F811
    """Held after its first chunk, then let through one more: the reason of the second chunk's
    rows joins the first's in the table, and the counts grow, without a reload."""
    Contact.objects.create(name="Already here", email="p2@example.com")
    held = gate("committed")
    workers.start(gate=held, **exact_chunks(500))
    actor = Actor.for_user(operator)
    checked = services.operation_register(op_type="Upload", actor=actor, data={"target": "contacts", "dry_run": "true"})
    files = {"file": upload_file(contacts_file(), "people.csv")}
    services.operation_start(op_id=checked.pk, actor=actor, data={}, files=files)
    held.wait_held(checked.pk)
    admin_login(page, operator, f"/admin/operations/operation/{checked.pk}/change/")
    table = page.locator(".lt-verdicts")
    expect(table).to_contain_text("E-mail is already in the table")
    assert "Score is not an integer" not in table.inner_text()
    page.evaluate("window.notReloaded = true")
    held.pass_through(checked.pk, "committed", 1)  # lines 501-1,000: a bad score at line 700
    expect(table.locator("tr", has_text="Score is not an integer")).to_contain_text("1")
    expect(page.locator('.lt-run [data-field="failed"]')).to_have_text("2")
    assert page.evaluate("window.notReloaded") is True
    screenshot(page, tmp_path, "dry-run-running")
    held.open_all()
    expect(page.locator(".lt-run [data-field=state]")).to_have_attribute("data-state", "completed", timeout=90_000)
    expect(table.locator("tr", has_text="E-mail is already in this file")).to_be_visible()
    screenshot(page, tmp_path, "dry-run-completed")
