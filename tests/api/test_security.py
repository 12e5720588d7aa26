"""SPEC §8: authentication everywhere, owners, staff, the anonymous switch, server-chosen file names."""

import base64
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from operations.models import Operation, OperationEvent
from tests.conftest import ROOT, csv_bytes, token_client, upload_file
from tests.support import operation_in_state

pytestmark = pytest.mark.django_db

S = Operation.State
NOT_AUTHENTICATED = {"message": "Authentication credentials were not provided."}
MISSING = {"message": "Operation ID Invalid"}


def set_state(op_id: int, state: str) -> None:
    operation_in_state(state, op_id=op_id)


def basic_client(username: str, password: str) -> APIClient:
    client = APIClient()
    credentials = base64.b64encode(f"{username}:{password}".encode()).decode()
    client.credentials(HTTP_AUTHORIZATION=f"Basic {credentials}")
    return client


def call(client: APIClient, method: str, url: str, body: dict | None = None):
    """Call an endpoint; a body with a file goes as multipart, any other as JSON."""
    body = dict(body or {})
    if method == "get":
        return client.get(url, body)
    if "file" in body:
        return client.post(url, body, format="multipart")
    return client.post(url, body, format="json")


def endpoints(op_id: int) -> list[tuple[str, str, dict]]:
    """Every endpoint of §5 and §6 that acts on one operation, with a body that would work for
    its owner when the operation is paused (after a start)."""
    base = f"/api/operations/{op_id}"
    return [
        ("post", "/upload/", {"op_id": op_id}),
        ("post", "/pause/", {"op_id": op_id}),
        ("post", "/resume/", {"op_id": op_id}),
        ("post", "/terminate/", {"op_id": op_id}),
        ("post", "/get_status/", {"op_id": op_id}),
        ("get", "/get_status/", {"op_id": op_id}),
        ("get", f"{base}/", {}),
        ("post", f"{base}/start/", {}),
        ("post", f"{base}/pause/", {}),
        ("post", f"{base}/resume/", {}),
        ("post", f"{base}/terminate/", {}),
        ("get", f"{base}/events/", {}),
        ("get", f"{base}/row-errors/", {}),
    ]


ENDPOINT_NAMES = [
    "upload",
    "pause",
    "resume",
    "terminate",
    "get_status-post",
    "get_status-get",
    "rest-detail",
    "rest-start",
    "rest-pause",
    "rest-resume",
    "rest-terminate",
    "rest-events",
    "rest-row-errors",
]
# The state in which each endpoint would succeed for the owner: a refusal of a stranger is then
# visibly the 404 of §8, not the 409 of the state.
SUCCEEDS_IN = {
    "upload": S.REGISTERED,
    "pause": S.QUEUED,
    "resume": S.PAUSED,
    "terminate": S.PAUSED,
    "rest-start": S.REGISTERED,
    "rest-pause": S.QUEUED,
    "rest-resume": S.PAUSED,
    "rest-terminate": S.PAUSED,
}


@pytest.fixture
def alice_op(register):
    """An operation owned by alice, registered."""
    return register()


# --- authentication ---------------------------------------------------------------------------

UNAUTHENTICATED_CALLS = [
    ("post", "/register/", {}),
    ("post", "/upload/", {"op_id": 1}),
    ("post", "/pause/", {"op_id": 1}),
    ("post", "/resume/", {"op_id": 1}),
    ("post", "/terminate/", {"op_id": 1}),
    ("post", "/get_status/", {"op_id": 1}),
    ("get", "/get_status/", {"op_id": 1}),
    ("get", "/api/operations/", {}),
    ("post", "/api/operations/", {}),
    ("get", "/api/operations/1/", {}),
    ("post", "/api/operations/1/start/", {}),
    ("post", "/api/operations/1/pause/", {}),
    ("post", "/api/operations/1/resume/", {}),
    ("post", "/api/operations/1/terminate/", {}),
    ("get", "/api/operations/1/events/", {}),
    ("get", "/api/operations/1/row-errors/", {}),
]


@pytest.mark.parametrize(
    ("method", "url", "body"), UNAUTHENTICATED_CALLS, ids=[f"{m} {u}" for m, u, _ in UNAUTHENTICATED_CALLS]
)
def test_every_endpoint_requires_authentication(alice_op, method, url, body):
    set_state(alice_op, S.QUEUED)
    body = {key: alice_op if key == "op_id" else value for key, value in body.items()}
    url = url.replace("/1/", f"/{alice_op}/")
    response = call(APIClient(), method, url, body)
    assert response.status_code == 401
    assert response.json() == NOT_AUTHENTICATED
    assert response["WWW-Authenticate"] == "Token"
    assert Operation.objects.count() == 1
    assert Operation.objects.get(pk=alice_op).state == S.QUEUED


@pytest.mark.parametrize("url", ["/api/schema/", "/api/docs/"])
def test_schema_and_docs_require_authentication(url):
    response = APIClient().get(url)
    assert response.status_code == 401
    assert response.json() == NOT_AUTHENTICATED


def test_the_schema_documents_every_authentication(api):
    schemes = api.get("/api/schema/?format=json").json()["components"]["securitySchemes"]
    assert schemes["basicAuth"] == {"type": "http", "scheme": "basic"}
    assert {"tokenAuth", "cookieAuth"} <= set(schemes)


@pytest.mark.parametrize(
    ("authorization", "message"),
    [
        ("Token 0123456789abcdef0123456789abcdef01234567", "Invalid token."),
        ("Token", "Invalid token header. No credentials provided."),
        ("Token a b", "Invalid token header. Token string should not contain spaces."),
        (f"Basic {base64.b64encode(b'alice:wrong').decode()}", "Invalid username/password."),
        (f"Basic {base64.b64encode(b'nobody:pw').decode()}", "Invalid username/password."),
        ("Basic !!!not-base64!!!", "Invalid basic header. Credentials not correctly base64 encoded."),
    ],
)
def test_bad_credentials(user, authorization, message):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=authorization)
    response = client.post("/register/", {}, format="json")
    assert response.status_code == 401
    assert response.json() == {"message": message}
    assert not Operation.objects.exists()


def test_basic_auth_with_a_nul_byte_in_the_user_name(user):
    response = basic_client("ali\x00ce", "alice-pw").post("/register/", {}, format="json")
    assert response.status_code == 401
    assert response.json() == {"message": "Invalid username/password."}


def test_inactive_user_is_refused(user):
    client = token_client(user)
    user.is_active = False
    user.save()
    response = client.post("/register/", {}, format="json")
    assert response.status_code == 401
    assert response.json() == {"message": "User inactive or deleted."}


def _register_and_check(client) -> int:
    response = client.post("/register/", {}, format="json")
    assert response.status_code == 201, response.content
    op_id = response.json()["op_id"]
    assert Operation.objects.get(pk=op_id).owner.username == "alice"
    status = client.get("/get_status/", {"op_id": op_id})
    assert status.status_code == 200
    assert status.json()["state"] == "registered"
    listed = client.get("/api/operations/")
    assert [item["op_id"] for item in listed.json()["results"]] == [op_id]
    return op_id


def test_token_authentication(api):
    op_id = _register_and_check(api)
    assert OperationEvent.objects.get(operation_id=op_id).actor == "user:alice"


def test_basic_authentication(user):
    _register_and_check(basic_client("alice", "alice-pw"))


def test_session_authentication(user):
    client = APIClient()
    assert client.login(username="alice", password="alice-pw")
    _register_and_check(client)


def test_session_authentication_enforces_csrf(user):
    client = APIClient(enforce_csrf_checks=True)
    assert client.login(username="alice", password="alice-pw")
    refused = client.post("/register/", {}, format="json")
    assert refused.status_code == 403
    assert refused.json()["message"].startswith("CSRF Failed")
    assert not Operation.objects.exists()
    assert client.get("/api/operations/").status_code == 200  # reads need no CSRF token


def test_token_authentication_needs_no_csrf(user):
    client = token_client(user)
    client.handler.enforce_csrf_checks = True
    assert client.post("/register/", {}, format="json").status_code == 201


# --- owners -----------------------------------------------------------------------------------


@pytest.mark.parametrize("index", range(len(ENDPOINT_NAMES)), ids=ENDPOINT_NAMES)
def test_stranger_gets_not_found_on_every_endpoint(api, start_upload, register, other_user, index):
    name = ENDPOINT_NAMES[index]
    state = SUCCEEDS_IN.get(name, S.PAUSED)
    op_id = register() if state == S.REGISTERED else start_upload(csv_bytes(3))
    set_state(op_id, state)
    events = OperationEvent.objects.filter(operation_id=op_id).count()
    method, url, body = endpoints(op_id)[index]
    if name in ("upload", "rest-start"):
        body["file"] = upload_file(csv_bytes(3))

    response = call(token_client(other_user), method, url, body)

    assert response.status_code == 404
    assert response.json() == MISSING
    op = Operation.objects.get(pk=op_id)
    assert op.state == state
    assert OperationEvent.objects.filter(operation_id=op_id).count() == events


def test_stranger_gets_the_same_answer_as_for_a_missing_operation(alice_op, other_user):
    bob = token_client(other_user)
    foreign = bob.post("/get_status/", {"op_id": alice_op}, format="json")
    missing = bob.post("/get_status/", {"op_id": alice_op + 1000}, format="json")
    assert (foreign.status_code, foreign.json()) == (missing.status_code, missing.json()) == (404, MISSING)


def test_owner_succeeds_where_the_stranger_is_refused(api, start_upload, register):
    """The states chosen in SUCCEEDS_IN do let the owner act (so the 404s above are real)."""
    for index, name in enumerate(ENDPOINT_NAMES):
        state = SUCCEEDS_IN.get(name, S.PAUSED)
        op_id = register() if state == S.REGISTERED else start_upload(csv_bytes(3))
        set_state(op_id, state)
        method, url, body = endpoints(op_id)[index]
        if name in ("upload", "rest-start"):
            body["file"] = upload_file(csv_bytes(3))
        response = call(api, method, url, body)
        assert response.status_code in (200, 202), (name, response.content)


def test_stranger_does_not_see_the_operation_in_the_list(register, api, other_user):
    alices = register()
    bob = token_client(other_user)
    bobs = register(bob)
    listed = bob.get("/api/operations/").json()
    assert listed["count"] == 1
    assert [item["op_id"] for item in listed["results"]] == [bobs]
    assert [item["op_id"] for item in api.get("/api/operations/").json()["results"]] == [alices]


def test_staff_see_all_operations(register, api, other_user, staff_user):
    alices = register()
    bobs = register(token_client(other_user))
    staff = token_client(staff_user)
    listed = staff.get("/api/operations/").json()
    assert listed["count"] == 2
    assert [item["op_id"] for item in listed["results"]] == [bobs, alices]
    for op_id in (alices, bobs):
        response = staff.post("/get_status/", {"op_id": op_id}, format="json")
        assert response.status_code == 200
        assert response.json()["op_id"] == op_id
        assert staff.get(f"/api/operations/{op_id}/events/").json()["count"] == 1


def test_staff_control_other_users_operations(start_upload, staff_user):
    op_id = start_upload(csv_bytes(3))
    staff = token_client(staff_user)

    paused = staff.post("/pause/", {"op_id": op_id}, format="json")
    assert (paused.status_code, paused.json()["state"]) == (200, "paused")
    resumed = staff.post(f"/api/operations/{op_id}/resume/")
    assert (resumed.status_code, resumed.json()["state"]) == (202, "queued")
    terminated = staff.post("/terminate/", {"op_id": op_id, "force": True}, format="json")
    assert (terminated.status_code, terminated.json()["state"]) == (200, "terminating")

    actors = list(OperationEvent.objects.filter(operation_id=op_id).values_list("actor", "to_state"))
    assert actors == [
        ("user:alice", "registered"),
        ("user:alice", "queued"),
        ("user:root", "paused"),
        ("user:root", "queued"),
        ("user:root", "terminating"),
    ]
    assert Operation.objects.get(pk=op_id).owner.username == "alice"


# --- anonymous access -------------------------------------------------------------------------


def test_anonymous_access_is_off_by_default():
    assert settings.LONG_TASK_ALLOW_ANONYMOUS is False
    response = APIClient().post("/register/", {}, format="json")
    assert response.status_code == 401
    assert response.json() == NOT_AUTHENTICATED


def test_anonymous_access_when_allowed(settings, register, staff_user):
    settings.LONG_TASK_ALLOW_ANONYMOUS = True
    anonymous = APIClient()

    registered = anonymous.post("/register/", {}, format="json")
    assert registered.status_code == 201
    op_id = registered.json()["op_id"]
    assert Operation.objects.get(pk=op_id).owner is None

    started = anonymous.post("/upload/", {"op_id": op_id, "file": upload_file(csv_bytes(3))})
    assert (started.status_code, started.json()["message"]) == (202, "upload started")
    paused = anonymous.post("/pause/", {"op_id": op_id}, format="json")
    assert (paused.status_code, paused.json()["state"]) == (200, "paused")
    status = anonymous.get("/get_status/", {"op_id": op_id})
    assert (status.status_code, status.json()["state"]) == (200, "paused")
    listed = anonymous.get("/api/operations/").json()
    assert [item["op_id"] for item in listed["results"]] == [op_id]

    # Anonymous users see only ownerless operations, and a user does not see those.
    alices = register()
    assert anonymous.post("/get_status/", {"op_id": alices}, format="json").json() == MISSING
    assert anonymous.post("/pause/", {"op_id": alices}, format="json").status_code == 404
    assert [item["op_id"] for item in anonymous.get("/api/operations/").json()["results"]] == [op_id]
    # Staff see everything.
    assert token_client(staff_user).get("/api/operations/").json()["count"] == 2


def test_anonymous_switch_does_not_accept_bad_credentials(settings, user):
    settings.LONG_TASK_ALLOW_ANONYMOUS = True
    response = basic_client("alice", "wrong").post("/register/", {}, format="json")
    assert response.status_code == 401
    assert response.json() == {"message": "Invalid username/password."}


# --- stored files -----------------------------------------------------------------------------

STORED_NAME = re.compile(r"uploads/(\d+)-[0-9a-f]{32}\.csv")


@pytest.mark.parametrize(
    ("client_name", "shown_name"),
    [
        ("../../etc/passwd.csv", "passwd.csv"),
        ("/etc/passwd", "passwd"),
        ("a/../../b.csv", "b.csv"),
        ("..\\..\\windows\\system.ini", "system.ini"),
        (".htaccess", ".htaccess"),
        ("data.php", "data.php"),
    ],
)
def test_uploaded_file_is_stored_under_a_server_chosen_name(api, register, tmp_path, client_name, shown_name):
    op_id = register()
    content = csv_bytes(3)
    response = api.post("/upload/", {"op_id": op_id, "file": upload_file(content, client_name)})
    assert response.status_code == 202

    op = Operation.objects.get(pk=op_id)
    assert op.file.name.startswith("uploads/")
    assert ".." not in op.file.name
    match = STORED_NAME.fullmatch(op.file.name)
    assert match and int(match.group(1)) == op_id
    media_root = Path(settings.MEDIA_ROOT).resolve()
    stored = (media_root / op.file.name).resolve()
    assert stored.is_relative_to(media_root / "uploads")
    assert stored.read_bytes() == content
    assert op.file_name == shown_name  # kept for display only
    # Nothing was written outside the media root.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["media"]
    assert not (Path("/etc") / "passwd.csv").exists()


def test_two_uploads_with_the_same_name_do_not_collide(api, register):
    first, second = register(), register()
    for op_id, rows in ((first, 2), (second, 3)):
        assert (
            api.post("/upload/", {"op_id": op_id, "file": upload_file(csv_bytes(rows), "same.csv")}).status_code == 202
        )
    a, b = Operation.objects.get(pk=first), Operation.objects.get(pk=second)
    assert a.file.name != b.file.name
    assert (Path(settings.MEDIA_ROOT) / a.file.name).read_bytes() == csv_bytes(2)
    assert (Path(settings.MEDIA_ROOT) / b.file.name).read_bytes() == csv_bytes(3)


def test_the_production_settings_pass_check_deploy(tmp_path):
    """docs/deployment.md says `check --deploy` is clean: keep it so."""
    env = {
        **os.environ,
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": "tasks.example.com",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
    }
    check = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "no issues" in check.stdout


# --- safe defaults ------------------------------------------------------------------------------


def _settings_in_a_fresh_process(tmp_path, code: str, **env: str) -> subprocess.CompletedProcess:
    """Run `code` after django.setup() with the real settings and exactly the given variables
    of ours (none of the test run's DJANGO_* ones)."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("DJANGO_")}
    environment.update(DJANGO_SETTINGS_MODULE="long_task.settings", DATABASE_URL=f"sqlite:///{tmp_path / 'db'}", **env)
    script = f"import django; django.setup()\nfrom django.conf import settings\n{code}"
    return subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60
    )


def test_without_django_debug_a_missing_secret_key_refuses_to_start(tmp_path):
    started = _settings_in_a_fresh_process(tmp_path, "print(settings.DEBUG)")
    assert started.returncode != 0
    assert "Set DJANGO_SECRET_KEY" in started.stderr


def test_only_the_commands_that_sign_nothing_run_without_a_secret_key(tmp_path):
    """makemigrations compares the models with the migrations (CI and hooks run it bare); a
    command that can serve or sign, `check` say, still refuses."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("DJANGO_")}
    environment["DATABASE_URL"] = f"sqlite:///{tmp_path / 'db'}"

    def manage(*arguments: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "manage.py", *arguments]
        return subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120)

    migrations = manage("makemigrations", "--check", "--dry-run")
    assert (migrations.returncode, migrations.stdout.strip()) == (0, "No changes detected"), migrations.stderr
    check = manage("check")
    assert check.returncode != 0 and "Set DJANGO_SECRET_KEY" in check.stderr


def test_debug_is_off_unless_asked_for(tmp_path):
    started = _settings_in_a_fresh_process(tmp_path, "print(settings.DEBUG)", DJANGO_SECRET_KEY="k" * 50)
    assert (started.returncode, started.stdout.strip()) == (0, "False"), started.stderr
    asked = _settings_in_a_fresh_process(tmp_path, "print(settings.DEBUG)", DJANGO_DEBUG="1")
    assert (asked.returncode, asked.stdout.strip()) == (0, "True"), asked.stderr


def test_server_errors_are_logged_with_debug_off(tmp_path):
    """Issue 9, finding 4: under gunicorn with DJANGO_DEBUG=0 a 500 left no trace (Django's
    default logging prints django.request only when DEBUG is on)."""
    code = "import logging; logging.getLogger('django.request').error('Internal Server Error: /probe/')"
    logged = _settings_in_a_fresh_process(tmp_path, code, DJANGO_DEBUG="0", DJANGO_SECRET_KEY="k" * 50)
    assert logged.returncode == 0, logged.stderr
    assert "ERROR django.request: Internal Server Error: /probe/" in logged.stderr


# --- permissions, not bare staff ---------------------------------------------------------------


def _user_with(django_user_model, name: str, *codenames: str, staff: bool = True):
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user(name, password=f"{name}-pw", is_staff=staff)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return user


def test_bare_staff_see_and_control_only_their_own(start_upload, register, django_user_model):
    alices = start_upload(csv_bytes(3))
    staff = _user_with(django_user_model, "staff")
    client = token_client(staff)
    own = register(client)
    assert [item["op_id"] for item in client.get("/api/operations/").json()["results"]] == [own]
    for method, url, body in endpoints(alices):
        response = call(client, method, url, body)
        assert (response.status_code, response.json()) == (404, MISSING), url
    assert Operation.objects.get(pk=alices).state == S.QUEUED


def test_staff_with_view_permission_see_but_cannot_act(start_upload, django_user_model):
    """Issue 9, finding 8: a staff user with only `view_operation` could not act in the admin
    but terminated another user's operation through /terminate/."""
    op_id = start_upload(csv_bytes(3))
    set_state(op_id, S.PAUSED)
    viewer = token_client(_user_with(django_user_model, "viewer", "view_operation"))
    assert viewer.post("/get_status/", {"op_id": op_id}, format="json").json()["state"] == S.PAUSED
    assert viewer.get(f"/api/operations/{op_id}/events/").status_code == 200
    assert viewer.get("/api/operations/").json()["count"] == 1
    forbidden = {"message": "You may see this operation but not act on it"}
    for url, body in (
        ("/terminate/", {"op_id": op_id, "force": True}),
        ("/resume/", {"op_id": op_id}),
        ("/upload/", {"op_id": op_id}),
        (f"/api/operations/{op_id}/terminate/", {}),
        (f"/api/operations/{op_id}/resume/", {}),
    ):
        response = viewer.post(url, body, format="json")
        assert (response.status_code, response.json()) == (403, forbidden), url
    assert Operation.objects.get(pk=op_id).state == S.PAUSED
    assert OperationEvent.objects.filter(operation_id=op_id, actor="user:viewer").count() == 0


def test_control_any_operation_lets_a_non_staff_user_act_on_others(start_upload, django_user_model):
    op_id = start_upload(csv_bytes(3))
    operator = token_client(_user_with(django_user_model, "operator", "control_any_operation", staff=False))
    response = operator.post("/terminate/", {"op_id": op_id, "force": True}, format="json")
    assert (response.status_code, response.json()["state"]) == (200, S.TERMINATING)


def test_the_admin_uses_the_same_rule(client, start_upload, django_user_model):
    from django.urls import reverse

    alices = start_upload(csv_bytes(3))
    changelist = reverse("admin:operations_operation_changelist")
    # Staff with the admin's change permission act on their own operations only.
    changer = _user_with(django_user_model, "changer", "change_operation")
    client.force_login(changer)
    own = Operation.objects.create(owner=changer, state=S.QUEUED)
    assert client.get(reverse("admin:operations_operation_change", args=[alices])).status_code == 302
    html = client.get(changelist).content.decode()
    assert f'value="{own.pk}"' in html and f'value="{alices}"' not in html
    client.post(changelist, {"action": "pause", "_selected_action": [own.pk, alices]})
    assert Operation.objects.get(pk=own.pk).state == S.PAUSED
    assert Operation.objects.get(pk=alices).state == S.QUEUED
    # With control_any_operation, everyone's.
    operator = _user_with(django_user_model, "operator", "control_any_operation")
    client.force_login(operator)
    assert f'value="{alices}"' in client.get(changelist).content.decode()
    client.post(changelist, {"action": "pause", "_selected_action": [alices]})
    assert Operation.objects.get(pk=alices).state == S.PAUSED
