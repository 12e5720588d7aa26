"""The console's import page with a target and a dry run, and the Import button of a dry run's
page (operations/admin/console.py), in one process."""

import pytest
from django.urls import reverse

from contacts.models import Contact
from operations import worker
from operations.models import Operation
from tests.api.test_console import DETAIL_POLL_QUERIES, LIVE
from tests.api.test_targets import csv_text, people
from tests.support import operation_in_state, upload_file

S = Operation.State
IMPORT = reverse("admin:operations_operation_import")
PREVIEW = reverse("admin:operations_operation_import_preview")


def page(op_id: int) -> str:
    return reverse("admin:operations_operation_change", args=[op_id])


@pytest.mark.django_db
def test_the_import_page_offers_plain_rows_and_every_target(admin_client):
    html = admin_client.get(IMPORT).content.decode()
    assert '<option value="">plain rows' in html
    assert '<option value="contacts">target contacts</option>' in html
    assert 'id="lt-check-submit"' in html and "Check the whole file" in html


@pytest.mark.django_db
def test_the_preview_shows_the_mapping_and_checks_the_cells_for_a_target(admin_client):
    content = b"Name,E-mail,Score,Notes\nAnn,ann@example.com,10,x\nBob,bob@example.com,abc,y\n"
    body = admin_client.post(PREVIEW, {"file": upload_file(content), "complete": "1", "target": "contacts"}).json()
    fed = {field["field"]: field["column"] for field in body["fields"]}
    assert body["target"] == "contacts" and body["header_problem"] == ""
    assert fed == {
        "name": "Name",
        "email": "E-mail",
        "phone": None,
        "city": None,
        "signup_date": None,
        "score": "Score",
    }
    assert body["unused_columns"] == ["Notes"]
    assert [row["problem"] for row in body["rows"]] == ["", 'Score: "abc" is not an integer']
    assert body["rows"][1]["raw"] == "Bob,bob@example.com,abc,y" and body["failed"] == 1


@pytest.mark.django_db
def test_the_preview_names_a_missing_required_column(admin_client):
    content = b"email,score\nann@example.com,1\n"
    body = admin_client.post(PREVIEW, {"file": upload_file(content), "complete": "1", "target": "contacts"}).json()
    assert [f for f in body["fields"] if f["column"] is None and f["required"]] == [
        {"field": "name", "column": None, "required": True}
    ]
    assert "missing required columns: name" in body["header_problem"]
    assert body["rows"][0]["problem"] == "not checked: the header does not fit the target"


@pytest.mark.django_db(transaction=True)
def test_check_the_whole_file_then_import_from_the_dry_runs_page(admin_client, chunks):
    content = csv_text(people(5) + people(1))  # the last row repeats the first's key
    response = admin_client.post(IMPORT, {"file": upload_file(content), "target": "contacts", "check": "1"})
    checked = Operation.objects.get()
    assert response.status_code == 302 and response["Location"] == page(checked.pk)
    assert checked.options == {"strict": False, "target": "contacts", "dry_run": True}
    assert 'data-verb="import" disabled' in admin_client.get(page(checked.pk)).content.decode()

    worker.work_operation(checked.pk)
    html = admin_client.get(page(checked.pk)).content.decode()
    assert 'data-verb="import"' in html and 'data-verb="import" disabled' not in html
    assert "email is already in this file" in html
    assert not Contact.objects.exists()

    response = admin_client.post(reverse("admin:operations_operation_import_checked", args=[checked.pk]))
    imported_by = Operation.objects.exclude(pk=checked.pk).get()
    assert response.status_code == 302 and response["Location"] == page(imported_by.pk)
    worker.work_operation(imported_by.pk)
    assert Contact.objects.filter(import_operation=imported_by.pk).count() == 5

    # A second click: refused, back on the dry run's page with the reason.
    response = admin_client.post(reverse("admin:operations_operation_import_checked", args=[checked.pk]), follow=True)
    assert f"This dry run&#x27;s file was imported already, by operation {imported_by.pk}" in response.content.decode()


@pytest.mark.django_db
def test_an_operation_that_is_no_dry_run_has_no_import_button(admin_client, admin_user):
    response = admin_client.post(IMPORT, {"file": upload_file(csv_text(people(2)))})
    op = Operation.objects.get()
    assert 'data-verb="import"' not in admin_client.get(page(op.pk)).content.decode()
    refused = admin_client.post(reverse("admin:operations_operation_import_checked", args=[op.pk]), follow=True)
    assert "is not a dry run" in refused.content.decode() and response.status_code == 302


@pytest.mark.django_db
def test_a_dry_runs_totals_by_reason_follow_it_in_one_poll_of_constant_queries(
    admin_client, admin_user, django_assert_num_queries
):
    """Its page shows the totals so far, the most frequent reason first; each poll of the live
    view brings them again as the worker counts on, in the queries of any page's poll."""
    so_far = {"Score is not an integer": 2}
    op = operation_in_state(
        S.RUNNING,
        owner=admin_user,
        options={"dry_run": True, "target": "contacts"},
        checkpoint={"rejected_by_reason": so_far},
        lines_finished=500,
        lines_failed=2,
    )
    html = admin_client.get(page(op.pk)).content.decode()
    assert "<tbody data-verdicts><tr><td>2</td><td>Score is not an integer</td></tr></tbody>" in html

    counted = {"Score is not an integer": 1_204, "E-mail is already in this file": 1_730, "E-mail is missing": 3}
    Operation.objects.filter(pk=op.pk).update(checkpoint={"rejected_by_reason": counted})
    with django_assert_num_queries(DETAIL_POLL_QUERIES):
        body = admin_client.get(LIVE, {"ids": op.pk, "detail": 1}).json()
    assert body["verdicts"] == [
        {"count": "1,730", "kind": "E-mail is already in this file"},
        {"count": "1,204", "kind": "Score is not an integer"},
        {"count": "3", "kind": "E-mail is missing"},
    ]


@pytest.mark.django_db
def test_an_operation_that_is_no_dry_run_has_no_totals_by_reason(admin_client, admin_user):
    op = operation_in_state(S.RUNNING, owner=admin_user)
    assert admin_client.get(LIVE, {"ids": op.pk, "detail": 1}).json()["verdicts"] is None
    assert "data-verdicts" not in admin_client.get(page(op.pk)).content.decode()
