"""The operator console without a browser (SPEC §10): the import page, the live view, the
buttons of an operation's page, the record of a run, the front door, the docs' login and the
schema's file type, and the admin pages' constant number of queries. tests/processes/test_browser.py
drives the same pages in Chromium."""

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.core.files.base import ContentFile
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from long_task_shared import humanize
from operations import selectors
from operations.admin.formatting import figures
from operations.admin.live import NEW_ROWS_MAX
from operations.admin.operation_admin import ROW_ERRORS_SHOWN
from operations.models import Operation, OperationEvent, RowError
from tests.support import csv_bytes, operation_in_state, upload_file

S = Operation.State
CHANGELIST = reverse("admin:operations_operation_changelist")
IMPORT = reverse("admin:operations_operation_import")
LIVE = reverse("admin:operations_operation_live")


def change_url(op: Operation) -> str:
    return reverse("admin:operations_operation_change", args=[op.pk])


def control_url(op: Operation, verb: str) -> str:
    return reverse("admin:operations_operation_control", args=[op.pk, verb])


def messages_of(response) -> list[tuple[str, str]]:
    return [(message.level_tag, message.message) for message in response.context["messages"]]


# --- import --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_import_registers_and_starts_an_upload_owned_by_the_operator(admin_client, admin_user):
    response = admin_client.post(IMPORT, {"file": upload_file(csv_bytes(10), "people.csv"), "strict": "on"})

    op = Operation.objects.get()
    assert response.status_code == 302 and response["Location"] == change_url(op)
    assert (op.state, op.owner, op.options, op.file_name) == (S.QUEUED, admin_user, {"strict": True}, "people.csv")
    assert [event.to_state for event in op.events.all()] == [S.REGISTERED, S.QUEUED]
    page = admin_client.get(response["Location"])
    assert messages_of(page) == [("success", f"Import #{op.pk} started: people.csv (465 B).")]


@pytest.mark.django_db
def test_import_from_the_script_answers_json(admin_client):
    response = admin_client.post(IMPORT, {"file": upload_file(csv_bytes(3))}, headers={"Accept": "application/json"})
    op = Operation.objects.get()
    assert response.status_code == 202
    assert response.json() == {"op_id": op.pk, "state": S.QUEUED, "redirect": change_url(op)}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "The file is empty"),
        (b"a,b\n1,\x002\n", "The file is not text (it contains NUL bytes)"),
    ],
)
def test_import_shows_the_apis_400_in_the_form_and_withdraws_the_operation(admin_client, api, content, message):
    response = admin_client.post(IMPORT, {"file": upload_file(content)})
    assert response.status_code == 400
    assert message in response.content.decode()
    op = Operation.objects.get()
    assert op.state == S.TERMINATED  # withdrawn, as the command-line client does
    # The same message as the API's.
    op_id = api.post("/register/").json()["op_id"]
    assert api.post("/upload/", {"op_id": op_id, "file": upload_file(content)}).json()["message"] == message

    response = admin_client.post(IMPORT, {"file": upload_file(content)}, headers={"Accept": "application/json"})
    assert (response.status_code, response.json()) == (400, {"message": message})


@pytest.mark.django_db
def test_import_without_a_file_says_so(admin_client):
    response = admin_client.post(IMPORT, {})
    assert response.status_code == 400
    assert "A CSV file is required" in response.content.decode()


@pytest.mark.django_db
def test_import_too_large_is_the_apis_413_even_before_the_body_is_read(admin_user, settings):
    settings.LONG_TASK_MAX_UPLOAD_BYTES = 100
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    token = client.get(IMPORT).context["csrf_token"]

    # Over the limit: refused by the streaming handler after 100 bytes.
    response = client.post(IMPORT, {"csrfmiddlewaretoken": str(token), "file": upload_file(csv_bytes(50))})
    assert response.status_code == 413
    assert "The file is larger than the upload limit of 100 bytes" in response.content.decode()

    # Far over it: refused before a byte is read, so even the form's CSRF token is not read;
    # the operator still reads why, not a CSRF failure.
    settings.LONG_TASK_MAX_UPLOAD_BYTES = 0
    big = upload_file(b"a\n" * (1024**2))
    response = client.post(IMPORT, {"csrfmiddlewaretoken": str(token), "file": big})
    assert response.status_code == 413
    assert not Operation.objects.exists()


@pytest.mark.django_db
def test_import_checks_csrf_and_needs_the_add_permission(admin_user, client, django_user_model):
    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(admin_user)
    assert csrf_client.post(IMPORT, {"file": upload_file(csv_bytes(3))}).status_code == 403

    viewer = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    client.force_login(viewer)
    assert client.get(IMPORT).status_code == 403
    assert client.post(IMPORT, {"file": upload_file(csv_bytes(3))}).status_code == 403
    assert not Operation.objects.exists()


@pytest.mark.django_db
def test_the_script_sends_the_csrf_token_as_a_header_and_gets_json(admin_user, settings):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    token = str(client.get(IMPORT).context["csrf_token"])
    headers = {"Accept": "application/json", "X-CSRFToken": token}  # as console.js sends them

    response = client.post(IMPORT, {"file": upload_file(csv_bytes(3))}, headers=headers)
    assert response.status_code == 202 and response.json()["op_id"] == Operation.objects.get().pk

    settings.LONG_TASK_MAX_UPLOAD_BYTES = 0
    response = client.post(IMPORT, {"file": upload_file(b"a\n" * (1024**2))}, headers=headers)
    assert response.status_code == 413
    assert response.json() == {"message": "The file is larger than the upload limit of 0 bytes"}


PREVIEW = reverse("admin:operations_operation_import_preview")


@pytest.mark.django_db
def test_preview_checks_the_first_rows_as_an_import_would_and_writes_nothing(admin_client, media_root):
    content = b'name,city\nann,Oslo\nbob\n\n"c, d",Rome\n'
    body = admin_client.post(PREVIEW, {"file": upload_file(content), "complete": "1"}).json()
    assert body == {
        "columns": ["name", "city"],
        "rows": [
            {"line": 1, "values": ["ann", "Oslo"], "problem": ""},
            {"line": 2, "raw": "bob", "problem": "expected 2 fields, found 1"},
            {"line": 3, "values": ["c, d", "Rome"], "problem": ""},
        ],
        "failed": 1,
        "complete": True,
        "header_bytes": len(b"name,city\n"),
        "rows_bytes": len(content) - len(b"name,city\n"),
    }
    assert not Operation.objects.exists()
    assert not [path for path in media_root.rglob("*") if path.is_file()]


@pytest.mark.django_db
def test_preview_of_the_start_of_a_file_leaves_out_the_row_cut_off(admin_client):
    body = admin_client.post(PREVIEW, {"file": upload_file(b"a,b\n1,2\n3,4\n5,"), "complete": "0"}).json()
    assert [row["line"] for row in body["rows"]] == [1, 2]
    body = admin_client.post(PREVIEW, {"file": upload_file(csv_bytes(50))}).json()
    assert len(body["rows"]) == 20 and body["failed"] == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "The file is empty"),
        (b"\xff\xfe,a\n", "The file is not UTF-8 text"),
        (b"a,a\n1,2\n", "The header names column 'a' twice"),
    ],
)
def test_preview_refuses_what_the_import_refuses(admin_client, content, message):
    response = admin_client.post(PREVIEW, {"file": upload_file(content), "complete": "1"})
    assert (response.status_code, response.json()) == (400, {"message": message})


@pytest.mark.django_db
def test_preview_needs_the_add_permission(client, django_user_model):
    viewer = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    client.force_login(viewer)
    assert client.post(PREVIEW, {"file": upload_file(b"a\n1\n")}).status_code == 403


# --- live ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_live_view_gives_the_status_and_its_figures_of_the_operations_asked_for(admin_client):
    running = operation_in_state(
        S.RUNNING, file_size=1000, position=250, lines_finished=1000, lines_failed=42, rows_per_second=50.0
    )
    done = operation_in_state(S.COMPLETED, lines_finished=300_000, lines_failed=42, total_lines=300_000)
    operation_in_state(S.PAUSED)  # not asked for

    body = admin_client.get(LIVE, {"ids": f"{running.pk},{done.pk},abc,99999"}).json()

    by_id = {entry["op_id"]: entry for entry in body["operations"]}
    assert set(by_id) == {running.pk, done.pk}
    entry = by_id[running.pk]
    assert entry["state"] == S.RUNNING and entry["eta_seconds"] == 60.0  # the API's seconds, as is
    assert entry["text"]["eta"] == "1m00s" == humanize.duration(60)  # and in the one human format
    assert entry["text"]["counts"] == "958 imported, 42 rejected"
    assert entry["text"]["rate"] == "50 rows/s"
    assert entry["active"] is True
    assert entry["allowed"] == {"pause": True, "resume": False, "terminate": True, "import": False}
    assert by_id[done.pk]["text"]["counts"] == "299,958 imported, 42 rejected of 300,000"
    assert by_id[done.pk]["active"] is False
    assert body["active"] is True
    assert body["counts"][S.RUNNING] == 1 and body["counts"][S.PAUSED] == 1 and body["counts"][S.FAILED] == 0


@pytest.mark.django_db
def test_live_view_with_detail_gives_the_record_and_the_events(admin_client):
    op = operation_in_state(S.PAUSED, lines_finished=7500)
    OperationEvent.objects.create(operation=op, actor="worker:w", from_state=S.PAUSING, to_state=S.PAUSED)
    body = admin_client.get(LIVE, {"ids": op.pk, "detail": 1}).json()
    assert body["active"] is False
    assert [event["to_state"] for event in body["events"]] == [S.PAUSED]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", body["events"][0]["at"])
    assert set(body["record"]) == {"duration", "working", "average"}


@pytest.mark.django_db
def test_live_view_is_for_staff_and_shows_only_what_they_may_see(client, user):
    op = operation_in_state(S.RUNNING, owner=user)
    response = client.get(LIVE, {"ids": op.pk})
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    client.force_login(user)  # not staff
    assert client.get(LIVE, {"ids": op.pk}).status_code == 302


def list_poll(client, *, since: int, shown: list[Operation], filters: str = "", **extra) -> dict:
    """What a list page's script asks for: its rows' figures and the operations new since it loaded."""
    query = {"ids": ",".join(str(op.pk) for op in shown), "since": since, "filters": filters, **extra}
    response = client.get(LIVE, query)
    assert response.status_code == 200, response.content
    return response.json()


def row_ids(html: str) -> list[int]:
    """The operations of rendered list rows, in order (each row names its operation once per live field)."""
    body = html.partition("<tbody>")[2]
    return [int(found) for found in re.findall(r'<tr>.*?data-op="(\d+)"', body, re.S)]


@pytest.mark.django_db
def test_live_view_sends_a_list_the_rows_of_operations_new_since_it_loaded(admin_client):
    old = operation_in_state(S.RUNNING, file_name="old.csv")
    since = admin_client.get(CHANGELIST).context["latest_id"]
    assert since == old.pk
    running = operation_in_state(S.RUNNING, file_name="new-running.csv")
    paused = operation_in_state(S.PAUSED, file_name="new-paused.csv")

    body = list_poll(admin_client, since=since, shown=[old])
    # Newest first, rendered as the list renders its rows (checkbox, link, live fields).
    assert row_ids(body["new_rows"]) == [paused.pk, running.pk]
    assert 'name="_selected_action"' in body["new_rows"] and "new-paused.csv" in body["new_rows"]
    assert body["latest"] == paused.pk and body["counts"][S.RUNNING] == 2

    # The page's filters and search apply; what the page already shows is not new.
    assert row_ids(list_poll(admin_client, since=since, shown=[old], filters="state__exact=running")["new_rows"]) == [
        running.pk
    ]
    assert row_ids(list_poll(admin_client, since=since, shown=[old], filters="q=paused")["new_rows"]) == [paused.pk]
    assert list_poll(admin_client, since=since, shown=[old, running, paused])["new_rows"] == ""
    # The rows' links keep the list's filters, as the list's own do.
    html = list_poll(admin_client, since=since, shown=[old], filters="state__exact=running")["new_rows"]
    assert f"/{running.pk}/change/?_changelist_filters=state__exact%3Drunning" in html


@pytest.mark.django_db
def test_live_view_sends_new_rows_only_of_what_the_user_may_see(client, user, other_user):
    user.is_staff = True
    user.save()
    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_operation", "change_operation"]))
    client.force_login(user)
    theirs = operation_in_state(S.RUNNING, owner=other_user)
    body = list_poll(client, since=0, shown=[])
    assert theirs.pk in row_ids(body["new_rows"])  # view_operation: everyone's
    user.user_permissions.remove(Permission.objects.get(codename="view_operation"))
    client.force_login(user)
    body = list_poll(client, since=0, shown=[])
    assert body["new_rows"] == ""
    assert body["active"] is False  # nothing of theirs moves: the list polls slowly


@pytest.mark.django_db
def test_a_list_polls_fast_while_any_operation_moves_and_a_page_while_its_own_does(admin_client):
    done = operation_in_state(S.COMPLETED)
    assert list_poll(admin_client, since=done.pk, shown=[done])["active"] is False
    queued = operation_in_state(S.QUEUED)
    # Not on this (filtered) list, but moving: the list may show it next.
    assert list_poll(admin_client, since=queued.pk, shown=[done], filters="state__exact=completed")["active"] is True
    assert admin_client.get(LIVE, {"ids": done.pk, "detail": 1}).json()["active"] is False
    assert admin_client.get(LIVE, {"ids": queued.pk, "detail": 1}).json()["active"] is True


@pytest.mark.django_db
@pytest.mark.parametrize("filters", ["no_such_field=1", "owner__password__startswith=a", "state__in=a,b&state__zz=1"])
def test_live_view_answers_a_filter_the_list_does_not_have_in_json(admin_client, filters):
    operation_in_state(S.RUNNING)
    response = admin_client.get(LIVE, {"ids": "", "since": 0, "filters": filters})
    assert response.status_code == 400
    assert response.json() == {"message": "The list has no such filter"}


@pytest.mark.django_db
def test_live_view_follows_an_operations_page_row_errors_error_and_file(admin_client, admin_user, media_root):
    op = operation_in_state(S.RUNNING, owner=admin_user, file_name="people.csv")  # the file: its owner's
    op.file.save("people.csv", ContentFile(b"a,b\n1,2\n"))
    RowError.objects.bulk_create(RowError(operation=op, line_number=n, reason=f"bad {n}") for n in (3, 9))

    def poll(shown: int, after: int) -> dict:
        query = {"ids": op.pk, "detail": 1, "errors_shown": shown, "errors_after": after}
        return admin_client.get(LIVE, query).json()

    body = poll(0, 0)
    assert body["row_errors"] == {
        "reset": False,
        "count": 2,
        "rows": [{"line": 3, "reason": "bad 3", "raw": ""}, {"line": 9, "reason": "bad 9", "raw": ""}],
    }
    entry = body["operations"][0]
    assert entry["download"] is True and entry["text"]["no_download"] == "" and entry["error"] == ""
    RowError.objects.create(operation=op, line_number=12, reason="bad 12")
    assert [row["line"] for row in poll(2, 9)["row_errors"]["rows"]] == [12]  # only what came since

    # Terminated: the rows and the file deleted; the page empties its table and drops the link.
    RowError.objects.filter(operation=op).delete()
    op.file.delete()
    operation_in_state(S.TERMINATED, op_id=op.pk)
    body = poll(3, 12)
    assert body["row_errors"] == {"reset": True, "count": 0, "rows": []}
    entry = body["operations"][0]
    assert entry["download"] is False
    assert entry["text"]["no_download"] == "This operation has no file to download"

    operation_in_state(S.FAILED, op_id=op.pk, error="The file changed under the import")
    entry = poll(0, 0)["operations"][0]
    assert entry["error"] == entry["text"]["reason"] == "The file changed under the import"


@pytest.mark.django_db
def test_page_shows_at_most_the_first_row_errors_and_the_live_view_adds_up_to_them(admin_client):
    op = operation_in_state(S.RUNNING)
    RowError.objects.bulk_create(RowError(operation=op, line_number=n, reason="bad") for n in range(1, 151))
    body = admin_client.get(LIVE, {"ids": op.pk, "detail": 1, "errors_shown": 90, "errors_after": 90}).json()
    assert [row["line"] for row in body["row_errors"]["rows"]] == list(range(91, ROW_ERRORS_SHOWN + 1))
    body = admin_client.get(LIVE, {"ids": op.pk, "detail": 1, "errors_shown": 100, "errors_after": 100}).json()
    assert body["row_errors"]["rows"] == [] and body["row_errors"]["count"] == 150


@pytest.mark.django_db
def test_download_link_is_offered_only_with_a_file_the_user_may_download(client, admin_client, admin_user, media_root):
    op = operation_in_state(S.COMPLETED, owner=admin_user, file_name="people.csv")
    html = admin_client.get(change_url(op)).content.decode()
    # No file: the card's link is there for the script, hidden, and the reason is said.
    assert re.search(r'<span data-op="\d+" data-when="download" hidden>', html)
    assert "This operation has no file to download" in html
    op.file.save("people.csv", ContentFile(b"a,b\n1,2\n"))
    html = admin_client.get(change_url(op)).content.decode()
    assert re.search(r'<span data-op="\d+" data-when="download">', html)

    watcher = type(admin_user).objects.create_user("watcher", password="pw", is_staff=True)
    watcher.user_permissions.add(Permission.objects.get(codename="view_operation"))
    client.force_login(watcher)
    html = client.get(change_url(op)).content.decode()
    assert 'data-when="download"' not in html and "/download/" not in html  # never theirs to download
    assert "For its owner only" in html
    entry = client.get(LIVE, {"ids": op.pk}).json()["operations"][0]
    assert entry["download"] is False and entry["text"]["no_download"] == "For its owner only"


@pytest.mark.django_db
def test_a_controls_message_is_tagged_with_the_state_it_describes(admin_client):
    op = operation_in_state(S.RUNNING)
    response = admin_client.post(control_url(op, "pause"), follow=True)
    assert [message.tags for message in response.context["messages"]] == ["lt-while-pausing success"]
    assert '<li class="lt-while-pausing success">' in response.content.decode()


@pytest.mark.django_db
def test_page_has_no_history_button_beside_its_own_history(admin_client):
    html = admin_client.get(change_url(operation_in_state(S.COMPLETED))).content.decode()
    assert "historylink" not in html and "/history/" not in html
    assert "<h2>History</h2>" in html


@pytest.mark.django_db
def test_list_shows_file_age_duration_and_why_a_failed_one_failed(admin_client, admin_user):
    now = timezone.now()
    ran = {"started_at": now - timedelta(seconds=65), "finished_at": now}
    failed = operation_in_state(S.FAILED, owner=admin_user, file_name="people.csv", error="x" * 300, **ran)
    Operation.objects.filter(pk=failed.pk).update(created_at=now - timedelta(minutes=3))
    html = admin_client.get(CHANGELIST).content.decode()
    for header in ("File", "Created"):
        assert f">{header}</a>" in html, header
    assert 'people.csv</span><small class="lt-sub">Upload &middot; admin</small>' in html
    assert re.search(r'data-field="age" title="[\d: -]+">3m0\ds ago<', html)
    assert f'ran <span data-op="{failed.pk}" data-field="duration">1m05s</span>' in html
    reason = re.search(r'data-field="reason">([^<]*)<', html).group(1)
    assert reason == "x" * 119 + "\u2026"
    assert figures(failed)["reason"] == reason and figures(operation_in_state(S.RUNNING))["reason"] == ""


# --- buttons -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_page_offers_the_controls_its_state_allows(admin_client):
    html = admin_client.get(change_url(operation_in_state(S.RUNNING))).content.decode()
    assert re.search(r'data-verb="pause"\s*>', html)
    assert re.search(r'data-verb="resume" disabled', html)
    assert re.search(r'data-verb="terminate"\s*>', html)


@pytest.mark.django_db
def test_pause_and_resume_from_the_page(admin_client, django_capture_on_commit_callbacks):
    op = operation_in_state(S.RUNNING)
    response = admin_client.post(control_url(op, "pause"), follow=True)
    op.refresh_from_db()
    assert op.state == S.PAUSING
    assert response.redirect_chain[-1][0] == change_url(op)
    assert messages_of(response) == [
        ("success", f"Pause requested: #{op.pk} is pausing; the worker stops at its next chunk.")
    ]

    operation_in_state(S.PAUSED, op_id=op.pk)
    with django_capture_on_commit_callbacks() as callbacks:
        response = admin_client.post(control_url(op, "resume"), follow=True)
    assert Operation.objects.get(pk=op.pk).state == S.QUEUED
    assert messages_of(response) == [
        ("success", f"Resumed: #{op.pk} is queued; a worker continues from its checkpoint.")
    ]
    assert len(callbacks) == 1  # a worker is woken, as by the API


@pytest.mark.django_db
def test_refusal_is_shown_and_changes_nothing(admin_client):
    op = operation_in_state(S.COMPLETED, lines_finished=10)
    response = admin_client.post(control_url(op, "pause"), follow=True)
    assert messages_of(response) == [("error", "Refused: Upload already finished.")]
    op.refresh_from_db()
    assert (op.state, op.lines_finished) == (S.COMPLETED, 10)


@pytest.mark.django_db
def test_terminate_asks_first_then_forces(admin_client):
    op = operation_in_state(S.RUNNING, lines_finished=40)
    page = admin_client.post(control_url(op, "terminate"))
    assert page.status_code == 200
    html = page.content.decode()
    assert "It is <b>running</b>" in html and 'name="confirmed" value="yes"' in html
    assert Operation.objects.get(pk=op.pk).state == S.RUNNING  # nothing yet

    response = admin_client.post(control_url(op, "terminate"), {"confirmed": "yes"}, follow=True)
    assert Operation.objects.get(pk=op.pk).state == S.TERMINATING
    assert messages_of(response)[0][1].startswith(f"Terminate requested: #{op.pk} is terminating")


@pytest.mark.django_db
def test_controls_keep_the_lists_filters(admin_client):
    op = operation_in_state(S.RUNNING)
    filters = "_changelist_filters=state__exact%3Drunning"
    response = admin_client.post(control_url(op, "pause") + "?" + filters)
    assert response["Location"] == change_url(op) + "?" + filters


@pytest.mark.django_db
def test_controls_need_the_change_permission_and_a_post(client, admin_client, django_user_model):
    from django.contrib.auth.models import Permission

    viewer = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_operation"))
    client.force_login(viewer)
    op = operation_in_state(S.RUNNING)
    assert 'data-verb="pause"' not in client.get(change_url(op)).content.decode()
    assert client.post(control_url(op, "pause")).status_code == 403
    assert admin_client.get(control_url(op, "pause")).status_code == 405
    assert admin_client.post(control_url(op, "delete")).status_code == 404
    assert Operation.objects.get(pk=op.pk).state == S.RUNNING


@pytest.mark.django_db
def test_every_console_post_needs_the_csrf_token(admin_user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    op = operation_in_state(S.RUNNING)
    token = str(client.get(change_url(op)).context["csrf_token"])

    assert client.post(control_url(op, "pause")).status_code == 403
    assert client.post(PREVIEW, {"file": upload_file(b"a\n1\n"), "complete": "1"}).status_code == 403
    assert Operation.objects.get(pk=op.pk).state == S.RUNNING

    assert client.post(control_url(op, "pause"), {"csrfmiddlewaretoken": token}).status_code == 302
    preview = client.post(PREVIEW, {"file": upload_file(b"a\n1\n"), "complete": "1"}, headers={"X-CSRFToken": token})
    assert preview.status_code == 200 and preview.json()["columns"] == ["a"]
    assert Operation.objects.get(pk=op.pk).state == S.PAUSING


@pytest.mark.django_db
def test_the_scripts_endpoints_answer_a_wrong_method_in_json(admin_client):
    response = admin_client.post(LIVE)
    assert (response.status_code, response.json(), response["Allow"]) == (405, {"message": "GET only"}, "GET")
    response = admin_client.get(PREVIEW)
    assert (response.status_code, response.json(), response["Allow"]) == (405, {"message": "POST only"}, "POST")


@pytest.mark.django_db
@pytest.mark.parametrize("bad_id", ["\u00b2", "\u0661", "99999999999999999999", "-1", "x"])
def test_ids_in_the_consoles_urls_that_are_no_ids_match_nothing(admin_client, bad_id):
    op = operation_in_state(S.RUNNING)
    body = admin_client.get(LIVE, {"ids": f"{bad_id},{op.pk}"}).json()
    assert [entry["op_id"] for entry in body["operations"]] == [op.pk]
    control = CHANGELIST + f"{bad_id}/control/pause/"
    assert admin_client.post(control).status_code == 404


# --- the record of a run ---------------------------------------------------------------------


@pytest.mark.django_db
def test_page_shows_the_record_of_a_completed_run(admin_client, admin_user):
    start = timezone.now() - timedelta(seconds=125)
    op = operation_in_state(
        S.COMPLETED,
        owner=admin_user,
        lines_finished=300_000,
        lines_failed=42,
        total_lines=300_000,
        started_at=start,
        finished_at=start + timedelta(seconds=125),
        file_name="people.csv",
        file="uploads/x.csv",
    )
    events = [
        (S.RUNNING, 0),
        (S.PAUSING, 20),
        (S.PAUSED, 21),  # 21 s worked, then paused for 4 s
        (S.QUEUED, 25),
        (S.RUNNING, 25),
        (S.COMPLETED, 125),  # 100 s more
    ]
    for to_state, seconds in events:
        event = OperationEvent.objects.create(operation=op, actor="worker:w", from_state="", to_state=to_state)
        OperationEvent.objects.filter(pk=event.pk).update(at=start + timedelta(seconds=seconds))

    html = admin_client.get(change_url(op)).content.decode()
    assert f'<dd data-op="{op.pk}" data-field="imported">299,958</dd>' in html
    assert 'data-record="duration">2m05s<' in html
    assert 'data-record="working">2m01s<' in html
    assert f'data-record="average">{humanize.count(300_000 / 121)} rows/s<' in html
    assert start.strftime("%Y-%m-%d %H:%M:%S") in html  # events to the second
    # The file through the API's owner-checked download, never a media URL.
    assert f'href="/api/operations/{op.pk}/download/"' in html
    assert "/media/" not in html
    assert f'href="/api/operations/{op.pk}/row-errors/?format=csv"' in html


@pytest.mark.django_db
def test_row_error_count_is_read_with_the_counters(admin_client):
    op = operation_in_state(S.RUNNING, lines_finished=300, lines_failed=300)
    RowError.objects.bulk_create(RowError(operation=op, line_number=n, reason="bad") for n in range(1, 301))
    html = admin_client.get(change_url(op)).content.decode()
    assert 'data-field="failed">300</span> (all of them' in html
    assert html.count("<tr data-line=") == ROW_ERRORS_SHOWN  # the first, in the card's table


@pytest.mark.django_db
def test_no_bar_without_a_percentage(admin_client):
    registered = operation_in_state(S.REGISTERED)
    terminated = operation_in_state(S.TERMINATED, file_size=1000, position=0)
    running = operation_in_state(S.RUNNING, file_size=1000, position=400)
    html = admin_client.get(CHANGELIST).content.decode()
    for op in (registered, terminated):
        assert re.search(rf'<progress data-op="{op.pk}" data-field="bar" max="100" value="0" hidden>', html)
    assert f'<progress data-op="{running.pk}" data-field="bar" max="100" value="40.0">' in html
    # Never an indeterminate (animated) bar: every <progress> has a value.
    assert not re.search(r"<progress(?![^>]*value=)[^>]*>", html)
    page = admin_client.get(change_url(terminated)).content.decode()
    assert not re.search(r"<progress(?![^>]*value=)[^>]*>", page)


@pytest.mark.django_db
def test_events_record_the_checkpoint_at_each_transition(admin_client, api, register):
    op_id = register()
    assert api.post("/upload/", {"op_id": op_id, "file": upload_file(csv_bytes(5))}).status_code == 202
    operation_in_state(S.RUNNING, op_id=op_id, lines_finished=3)
    api.post("/pause/", {"op_id": op_id})
    details = list(OperationEvent.objects.filter(operation_id=op_id).values_list("detail", flat=True))
    assert details == ["registered", "at line 0", "at line 3"]


def test_one_duration_format_everywhere():
    assert [humanize.duration(s) for s in (None, 5, 65, 6094)] == ["-", "5s", "1m05s", "1h41m"]


@pytest.mark.django_db
def test_figures_of_each_state_render(in_state):
    for state in S.values:
        assert figures(in_state(state))["state"] == state


# --- overview --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_changelist_shows_counts_by_state_and_keeps_the_other_filters(admin_client):
    for state in (S.RUNNING, S.RUNNING, S.PAUSED):
        operation_in_state(state)
    html = admin_client.get(CHANGELIST, {"op_type__exact": "Upload"}).content.decode()
    assert '<b data-count="running">2</b>' in html
    assert '<b data-count="paused">1</b>' in html
    assert '<b data-count="failed">0</b>' in html
    assert 'href="?op_type__exact=Upload&amp;state__exact=paused"' in html
    assert "Import CSV" in html


@pytest.mark.django_db
def test_counts_are_of_what_the_user_may_see(user, other_user):
    operation_in_state(S.RUNNING, owner=user)
    operation_in_state(S.RUNNING, owner=other_user)
    assert selectors.operation_counts(user=user)[S.RUNNING] == 1


# --- queries: constant whatever the numbers ------------------------------------------------


def count_queries(client, url, params=None) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url, params or {}).status_code == 200
    return len(queries)


# The list: the session, the user, the counts by state with the newest id, the filtered and the
# whole count, the page of rows (with their owners), the types for the type filter.
CHANGELIST_QUERIES = 7


@pytest.mark.django_db
def test_changelist_and_live_view_queries_do_not_grow_with_the_operations(admin_client, admin_user):
    def make(n):
        Operation.objects.bulk_create(
            Operation(state=S.RUNNING, owner=admin_user, file_size=100, position=n % 100) for _ in range(n)
        )
        return list(Operation.objects.values_list("pk", flat=True))

    def count(ids):
        return (
            count_queries(admin_client, CHANGELIST),
            count_queries(admin_client, CHANGELIST, {"created_from": "2000-01-01", "state__exact": "running"}),
            count_queries(admin_client, LIVE, {"ids": ",".join(map(str, ids))}),
        )

    ids = make(3)
    admin_client.get(CHANGELIST)  # warm caches (content types) that a first request fills
    few = count(ids)
    ids = make(117)
    assert len(ids) == 120
    many = count(ids)
    assert few == many, (few, many)
    assert few[:2] == (CHANGELIST_QUERIES, CHANGELIST_QUERIES)
    print(f"queries: changelist {few[0]} ({few[1]} filtered), live view {few[2]} (3 and 120 operations)")


# A poll of the live view: the session, the user, the operations asked for, the counts by state
# with the newest id; a list's poll adds the new operations (their rows need nothing more).
LIST_POLL_QUERIES = 5
DETAIL_POLL_QUERIES = 6  # the operations (with their row errors' count), counts, events, row errors


@pytest.mark.django_db
@pytest.mark.parametrize(("shown", "new"), [(3, 0), (3, 3), (120, 0), (120, 80)])
def test_a_lists_poll_is_a_constant_number_of_queries(admin_client, admin_user, django_assert_num_queries, shown, new):
    def make(n: int) -> list[int]:
        made = Operation.objects.bulk_create(
            Operation(state=S.RUNNING, owner=admin_user, file_name=f"{i}.csv", file_size=100, position=i % 100)
            for i in range(n)
        )
        return [op.pk for op in made]

    ids = make(shown)
    since = max(ids)
    make(new)
    admin_client.get(CHANGELIST)  # warm caches (content types, permissions) that a first request fills
    query = {
        "ids": ",".join(map(str, ids)),
        "since": since,
        "filters": "state__exact=running&q=csv&created_from=2000-01-01",
    }
    with django_assert_num_queries(LIST_POLL_QUERIES):
        body = admin_client.get(LIVE, query).json()
    assert len(row_ids(body["new_rows"])) == min(new, NEW_ROWS_MAX)
    assert len(body["operations"]) == shown


@pytest.mark.django_db
def test_change_page_queries_do_not_grow_with_the_row_errors_or_events(admin_client):
    def make(errors):
        op = operation_in_state(S.COMPLETED, lines_finished=errors, lines_failed=errors)
        RowError.objects.bulk_create(RowError(operation=op, line_number=n, reason="bad") for n in range(1, errors + 1))
        OperationEvent.objects.bulk_create(
            OperationEvent(operation=op, actor="a", from_state="", to_state=S.RUNNING) for _ in range(errors)
        )
        return op

    one, many = make(1), make(300)
    admin_client.get(change_url(one))  # warm caches (content types) that a first request fills
    queries = count_queries(admin_client, change_url(one)), count_queries(admin_client, change_url(many))
    assert queries[0] == queries[1], queries
    detail = [count_queries(admin_client, LIVE, {"ids": op.pk, "detail": 1}) for op in (one, many)]
    assert detail[0] == detail[1] == DETAIL_POLL_QUERIES, detail
    print(f"queries: change page {queries[0]}, live view with detail {detail[0]} (1 and 300 row errors)")


# --- front door, docs, schema ----------------------------------------------------------------


@pytest.mark.django_db
def test_front_door_links_the_console_and_the_docs(client):
    response = client.get("/")
    assert response.status_code == 200
    html = response.content.decode()
    for url in (CHANGELIST, IMPORT, "/api/docs/", "/api/schema/"):
        assert f'href="{url}' in html


@pytest.mark.django_db
def test_docs_send_a_browser_to_log_in_and_api_clients_get_401(client, user):
    browser = client.get("/api/docs/", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert browser.status_code == 302
    assert browser["Location"] == "/api/auth/login/?next=/api/docs/"

    for headers in ({"Accept": "*/*"}, {}):  # curl, or a client that says nothing
        api_client = client.get("/api/docs/", headers=headers)
        assert api_client.status_code == 401
        assert api_client.json() == {"message": "Authentication credentials were not provided."}

    client.force_login(user)
    assert client.get("/api/docs/", headers={"Accept": "text/html"}).status_code == 200


@pytest.mark.django_db
def test_schema_types_the_file_as_a_binary_upload(api):
    schema = api.get("/api/schema/", {"format": "json"}).json()

    def multipart_file(path: str) -> dict:
        body = schema["paths"][path]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
        name = body["$ref"].rsplit("/", 1)[-1]
        return schema["components"]["schemas"][name]["properties"]["file"]

    for path in ("/upload/", "/api/operations/{id}/start/"):
        assert multipart_file(path) == {"type": "string", "format": "binary"}, path
