"""The console as an operator's tool (SPEC §10), without a browser: titles that say what a page
is, figures in human form, the machinery out of the operator's way, the created filter, bulk
resume of failed operations, and a refused import's reason in its history.
tests/processes/test_browser.py drives the same pages in Chromium (and a phone's width)."""

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from operations.models import Operation
from tests.support import csv_bytes, operation_in_state, upload_file

S = Operation.State
CHANGELIST = reverse("admin:operations_operation_changelist")
IMPORT = reverse("admin:operations_operation_import")
LIVE = reverse("admin:operations_operation_live")


def change_url(op: Operation) -> str:
    return reverse("admin:operations_operation_change", args=[op.pk])


def listed(html: str) -> list[int]:
    """The ids of the list's rows, in order."""
    return [int(pk) for pk in re.findall(r'name="_selected_action" value="(\d+)"', html)]


def created_ago(op: Operation, **ago) -> Operation:
    Operation.objects.filter(pk=op.pk).update(created_at=timezone.now() - timedelta(**ago))
    return Operation.objects.get(pk=op.pk)


# --- titles ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_titles_say_what_the_page_is(admin_client):
    html = admin_client.get(CHANGELIST).content.decode()
    assert "<title>Operations |" in html and "<h1>Operations</h1>" in html
    assert "Select operation to change" not in html

    op = operation_in_state(S.COMPLETED, file_name="people.csv")
    html = admin_client.get(change_url(op)).content.decode()
    assert f"<title>Upload #{op.pk} \u00b7 people.csv |" in html
    assert re.search(
        rf'<h1 class="lt-title">Upload #{op.pk}<span [^>]*data-field="file_title"> \u00b7 people.csv<', html
    )
    assert "View operation" not in html and "Change operation" not in html
    # Without a file (yet): the type and the number; the name comes live (file_title).
    fresh = operation_in_state(S.REGISTERED)
    assert f"<title>Upload #{fresh.pk} |" in admin_client.get(change_url(fresh)).content.decode()


# --- figures in human form -------------------------------------------------------------------


@pytest.mark.django_db
def test_page_shows_sizes_options_and_checkpoint_in_words_without_raw_help_texts(admin_client):
    op = operation_in_state(
        S.PAUSED,
        file_name="people.csv",
        file_size=52_104_321,
        options={"strict": False, "target": "contacts", "mapping": {"Full Name": "name"}},
        lines_finished=7_500,
        position=1_234_567,
    )
    html = admin_client.get(change_url(op)).content.decode()
    assert '<span title="52,104,321 bytes">52.1 MB</span>' in html and "52104321" not in html
    assert "strict: no \u00b7 target: contacts \u00b7 mapping: Full Name \u2192 name" in html
    assert "{&quot;strict&quot;" not in html and '{"strict"' not in html
    assert "line 7,500 (position 1,234,567)" in html
    for help_text in ("for display", "Where the type stands", "More of the type", "Terminate: rows deleted"):
        assert help_text not in html, help_text


@pytest.mark.django_db
def test_rows_and_times_are_told_apart(admin_client):
    """Rows "read" (a count), times "at": never two "finished" on one page."""
    html = admin_client.get(change_url(operation_in_state(S.COMPLETED, lines_finished=10))).content.decode()
    assert "<dt>rows read</dt>" in html and "<label>Finished at:</label>" in html
    labels = re.findall(r"<dt>([^<]*)</dt>|<label>([^<]*)</label>", html)
    assert not [label for pair in labels for label in pair if label.strip(":").strip().lower() == "finished"]


# --- the machinery out of the operator's way -------------------------------------------------


def sidebar(html: str) -> list[str]:
    """The sidebar's applications, in order."""
    nav = html[html.index('id="nav-sidebar"') :]
    return re.findall(r'class="section" title="[^"]*">([^<]+)</a>', nav[: nav.index("</nav>")])


@pytest.mark.django_db
def test_a_superuser_finds_the_queue_and_tokens_at_the_end_under_system(admin_client):
    html = admin_client.get(CHANGELIST).content.decode()
    apps = sidebar(html)
    assert apps[0] == "Operations", apps
    assert apps[-2:] == ["System \u00b7 API tokens", "System \u00b7 Task queue"], apps
    nav = html[html.index('id="nav-sidebar"') :]
    assert "/admin/background_task/task/add/" not in nav and "/admin/authtoken/tokenproxy/add/" not in nav
    assert admin_client.get("/admin/background_task/task/").status_code == 200  # still reachable


@pytest.mark.django_db
def test_an_operator_does_not_see_them_and_still_reaches_them_by_url(client, staff_user):
    staff_user.user_permissions.add(
        Permission.objects.get(codename="view_operation"),
        Permission.objects.get(codename="view_task", content_type__app_label="background_task"),
    )
    client.force_login(staff_user)
    html = client.get(CHANGELIST).content.decode()
    assert sidebar(html) == ["Operations"]
    assert client.get("/admin/background_task/task/").status_code == 200
    assert "Tasks" in client.get("/admin/background_task/").content.decode()


# --- the created filter ----------------------------------------------------------------------


@pytest.fixture
def by_age(admin_user) -> dict[str, Operation]:
    return {
        "now": operation_in_state(S.COMPLETED, owner=admin_user),
        "3 days": created_ago(operation_in_state(S.FAILED, owner=admin_user), days=3),
        "20 days": created_ago(operation_in_state(S.COMPLETED, owner=admin_user), days=20),
    }


@pytest.mark.django_db
def test_created_filter_today_past_week_and_a_range_of_days(admin_client, by_age):
    html = admin_client.get(CHANGELIST).content.decode()
    assert "By created" in html
    today = re.search(r'<a href="([^"]+)">Today</a>', html).group(1).replace("&amp;", "&")
    week = re.search(r'<a href="([^"]+)">Past 7 days</a>', html).group(1).replace("&amp;", "&")
    assert listed(admin_client.get(CHANGELIST + today).content.decode()) == [by_age["now"].pk]
    assert listed(admin_client.get(CHANGELIST + week).content.decode()) == [by_age["3 days"].pk, by_age["now"].pk]

    def days(**ago) -> str:
        return str(timezone.localdate() - timedelta(**ago))

    ranged = admin_client.get(CHANGELIST, {"created_from": days(days=25), "created_to": days(days=2)})
    html = ranged.content.decode()
    assert listed(html) == [by_age["20 days"].pk, by_age["3 days"].pk]
    assert f'name="created_from" value="{days(days=25)}"' in html  # the form keeps the range
    # Both days are included; one side alone is open.
    assert listed(admin_client.get(CHANGELIST, {"created_to": days(days=3)}).content.decode()) == [
        by_age["20 days"].pk,
        by_age["3 days"].pk,
    ]
    assert listed(admin_client.get(CHANGELIST, {"created_from": days(days=0)}).content.decode()) == [by_age["now"].pk]


@pytest.mark.django_db
def test_created_range_keeps_the_other_filters_and_a_link_drops_the_range(admin_client, by_age):
    html = admin_client.get(CHANGELIST, {"state__exact": "failed", "created_from": "2000-01-01"}).content.decode()
    assert listed(html) == [by_age["3 days"].pk]
    form = html[html.index('class="lt-date-range"') :]
    form = form[: form.index("</form>")]
    assert '<input type="hidden" name="state__exact" value="failed">' in form
    assert 'name="created_from" value="2000-01-01"' in form
    today = re.search(r'<a href="([^"]+)">Today</a>', html).group(1)
    assert "created_from" not in today and "state__exact=failed" in today


@pytest.mark.django_db
def test_a_day_that_is_no_day_is_the_lists_error_page_and_the_live_views_400(admin_client):
    response = admin_client.get(CHANGELIST, {"created_from": "yesterday"})
    assert response.status_code == 302 and response["Location"].endswith("?e=1")
    response = admin_client.get(LIVE, {"ids": "", "since": 0, "filters": "created_from=yesterday"})
    assert (response.status_code, response.json()) == (400, {"message": "The list has no such filter"})


@pytest.mark.django_db
def test_a_list_filtered_by_days_takes_in_only_the_new_operations_of_those_days(admin_client, admin_user):
    since = operation_in_state(S.COMPLETED, owner=admin_user).pk
    new = operation_in_state(S.QUEUED, owner=admin_user)
    today = str(timezone.localdate())
    body = admin_client.get(LIVE, {"ids": str(since), "since": since, "filters": f"created_from={today}"}).json()
    assert f'value="{new.pk}"' in body["new_rows"]
    body = admin_client.get(LIVE, {"ids": str(since), "since": since, "filters": "created_to=2000-01-01"}).json()
    assert body["new_rows"] == ""


# --- bulk resume -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_bulk_resume_queues_the_failed_ones_and_says_why_not_the_others(
    admin_client, django_capture_on_commit_callbacks
):
    failed = [operation_in_state(S.FAILED, error="database went away", lines_finished=500) for _ in range(2)]
    done = operation_in_state(S.COMPLETED)
    selected = [op.pk for op in (*failed, done)]
    with django_capture_on_commit_callbacks(execute=False):
        response = admin_client.post(
            CHANGELIST, {"action": "resume", "_selected_action": selected, "index": 0}, follow=True
        )
    messages = [str(message) for message in response.context["messages"]]
    assert messages == [
        f"Resumed: #{failed[0].pk} is queued, #{failed[1].pk} is queued.",
        f"Refused: #{done.pk}: Upload already finished.",
    ]
    for op in failed:
        op.refresh_from_db()
        assert (op.state, op.error, op.lines_finished) == (S.QUEUED, "", 500)  # from its checkpoint
        assert list(op.events.values_list("from_state", "to_state"))[-1] == (S.FAILED, S.QUEUED)
    html = admin_client.get(CHANGELIST).content.decode()
    assert '<option value="resume">Resume (paused or failed)</option>' in html


# --- a refused import says why ---------------------------------------------------------------


@pytest.mark.django_db
def test_an_import_refused_at_upload_says_why_in_its_history(admin_client):
    response = admin_client.post(IMPORT, {"file": upload_file(b"")})
    assert response.status_code == 400
    op = Operation.objects.get()
    details = list(op.events.values_list("from_state", "to_state", "detail"))
    assert details == [
        ("", S.REGISTERED, "registered"),
        (S.REGISTERED, S.REGISTERED, "input refused: The file is empty"),
        (S.REGISTERED, S.TERMINATING, details[2][2]),
        (S.TERMINATING, S.TERMINATED, "nothing to roll back"),
    ]
    html = admin_client.get(change_url(op)).content.decode()
    assert "input refused: The file is empty" in html


@pytest.mark.django_db
def test_an_accepted_import_records_no_refusal(admin_client):
    admin_client.post(IMPORT, {"file": upload_file(csv_bytes(3))})
    assert not Operation.objects.get().events.filter(detail__startswith="input refused").exists()
