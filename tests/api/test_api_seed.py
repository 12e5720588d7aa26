"""The HTTP contract of SPEC §5 (seed-compatible endpoints) and §6 (REST API).

Operations are put into a given state by writing `state` directly: these tests are about
status codes, bodies and messages; the state machine has its own tests. No workers run.
"""

import io
import json
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode

import pytest
from django.conf import settings
from django.db import OperationalError
from django.utils import timezone
from rest_framework.test import APIClient

from operations import queue
from operations.models import Operation, OperationEvent, RowError
from tests.conftest import csv_bytes, upload_file
from tests.support import operation_in_state

pytestmark = pytest.mark.django_db

S = Operation.State
ALL_STATES = [state for state, _ in S.choices]
STATUS_FIELDS = {
    "op_id",
    "op_type",
    "state",
    "lines_finished",
    "is_finished",
    "is_paused",
    "is_terminated",
    "lines_failed",
    "total_lines",
    "percent",
    "rows_per_second",
    "eta_seconds",
    "error",
    "created_at",
    "started_at",
    "finished_at",
    "updated_at",
}
# What a list adds to each status object, to tell operations apart.
LIST_FIELDS = {"file_name", "duration_seconds"}
MISSING = {"message": "Operation ID Invalid"}
ENCODINGS = ["json", "multipart", "form"]


def set_state(op_id: int, state: str, **fields) -> None:
    operation_in_state(state, op_id=op_id, **fields)


def state_of(op_id: int) -> str:
    return Operation.objects.get(pk=op_id).state


def post(client, url: str, data: dict, encoding: str):
    """POST `data` as JSON, multipart or application/x-www-form-urlencoded."""
    if encoding == "form":
        return client.post(url, urlencode(data), content_type="application/x-www-form-urlencoded")
    return client.post(url, data, format=encoding)


def stored_uploads() -> list[Path]:
    uploads = Path(settings.MEDIA_ROOT) / "uploads"
    return sorted(uploads.iterdir()) if uploads.exists() else []


@pytest.fixture
def op_in(register, start_upload):
    """An operation in `state`; with `started=True` it has a stored file (csv_bytes(3))."""

    def make(state: str, *, started: bool = False, **fields) -> int:
        op_id = start_upload(csv_bytes(3)) if started else register()
        set_state(op_id, state, **fields)
        return op_id

    return make


# --- /register/ -------------------------------------------------------------------------------


@pytest.mark.parametrize("debug", [False, True])
def test_endpoints_answer_without_the_trailing_slash(api, settings, debug):
    """curl users leave the slash off; a POST cannot follow APPEND_SLASH's redirect."""
    settings.DEBUG = debug
    response = api.post("/register", {}, format="json")
    assert response.status_code == 201, response.content
    op_id = response.json()["op_id"]
    response = api.post("/get_status", {"op_id": op_id})
    assert response.status_code == 200
    assert response.json()["state"] == "registered"
    assert api.post(f"/api/operations/{op_id}/pause", format="json").status_code == 409


def test_a_get_without_the_slash_is_redirected_to_the_canonical_url(api):
    response = api.get("/api/operations")
    assert response.status_code == 301
    assert response["Location"] == "/api/operations/"


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_register_defaults_to_upload(api, encoding):
    response = post(api, "/register/", {}, encoding)
    assert response.status_code == 201
    body = response.json()
    op = Operation.objects.get()
    assert body == {"op_id": op.pk, "op_type": "Upload", "state": "registered"}
    assert op.state == S.REGISTERED
    assert op.owner.username == "alice"


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_register_explicit_op_type(api, encoding):
    response = post(api, "/register/", {"op_type": "Upload"}, encoding)
    assert response.status_code == 201
    assert response.json() == {"op_id": Operation.objects.get().pk, "op_type": "Upload", "state": "registered"}


def test_register_without_a_body(api):
    response = api.post("/register/")
    assert response.status_code == 201
    assert response.json()["op_type"] == "Upload"


def test_register_records_an_event(api, register):
    op_id = register()
    events = list(OperationEvent.objects.filter(operation_id=op_id).values_list("actor", "from_state", "to_state"))
    assert events == [("user:alice", "", "registered")]


def test_register_strict_option(api):
    response = api.post("/register/", {"strict": True}, format="json")
    assert response.status_code == 201
    assert Operation.objects.get(pk=response.json()["op_id"]).options == {"strict": True}


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_register_unknown_op_type(api, encoding):
    response = post(api, "/register/", {"op_type": "Nope"}, encoding)
    assert response.status_code == 400
    assert response.json() == {"message": "Unknown op_type 'Nope'. Known types: Export, Upload"}
    assert not Operation.objects.exists()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"op_type": 5}, "op_type must be a string"),
        ({"op_type": ["Upload"]}, "op_type must be a string"),
        ({"strict": "maybe"}, "strict must be true or false"),
    ],
)
def test_register_bad_values(api, body, message):
    response = api.post("/register/", body, format="json")
    assert response.status_code == 400
    assert response.json() == {"message": message}
    assert not Operation.objects.exists()


# --- /upload/ -------------------------------------------------------------------------------


def test_upload_starts_a_registered_operation(api, register):
    op_id = register()
    content = csv_bytes(3)
    response = api.post("/upload/", {"op_id": op_id, "file": upload_file(content, "people.csv")})
    assert response.status_code == 202
    body = response.json()
    assert set(body) == STATUS_FIELDS | {"message"}
    assert body["message"] == "upload started"
    assert body["op_id"] == op_id
    assert body["op_type"] == "Upload"
    assert body["state"] == "queued"
    assert body["lines_finished"] == 0
    assert body["lines_failed"] == 0
    assert body["is_finished"] is False
    assert body["is_paused"] is False
    assert body["is_terminated"] is False
    assert body["total_lines"] is None
    assert body["error"] == ""
    assert body["started_at"] is not None
    assert body["finished_at"] is None
    assert 0 <= body["percent"] < 100

    op = Operation.objects.get(pk=op_id)
    assert op.state == S.QUEUED
    assert op.file_name == "people.csv"
    assert op.file_size == len(content)
    assert op.columns == ["name", "phone", "email", "city"]
    assert (Path(settings.MEDIA_ROOT) / op.file.name).read_bytes() == content


def test_a_failed_enqueue_after_the_commit_keeps_the_upload(
    api, register, monkeypatch, django_capture_on_commit_callbacks
):
    """The start has committed: the answer stays 202 and the file stays; the worker's recovery
    sweep takes up a queued operation whose task never came."""

    def queue_away(op_id):
        raise OperationalError("the task queue is away")

    monkeypatch.setattr(queue, "_enqueue", queue_away)
    op_id = register()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = api.post("/upload/", {"op_id": op_id, "file": upload_file(csv_bytes(3))})
    assert len(callbacks) == 1
    assert response.status_code == 202, response.content
    op = Operation.objects.get(pk=op_id)
    assert op.state == S.QUEUED
    assert (Path(settings.MEDIA_ROOT) / op.file.name).read_bytes() == csv_bytes(3)


def test_upload_with_matching_lines_starts(api, register):
    op_id = register()
    response = api.post("/upload/", {"op_id": op_id, "lines": 0, "file": upload_file(csv_bytes(2))})
    assert response.status_code == 202
    assert response.json()["message"] == "upload started"


def test_upload_to_missing_operation(api):
    response = api.post("/upload/", {"op_id": 999999, "file": upload_file(csv_bytes(2))})
    assert response.status_code == 404
    assert response.json() == MISSING
    assert stored_uploads() == []


@pytest.mark.parametrize(
    ("state", "message"),
    [
        (S.QUEUED, "Upload already running"),
        (S.RUNNING, "Upload already running"),
        (S.PAUSING, "Upload already running"),
        (S.COMPLETED, "Upload already finished"),
        (S.TERMINATING, "Upload already terminated"),
        (S.TERMINATED, "Upload already terminated"),
    ],
)
def test_upload_refused_by_state(api, op_in, state, message):
    op_id = op_in(state)
    response = api.post("/upload/", {"op_id": op_id, "file": upload_file(csv_bytes(2))})
    assert response.status_code == 409
    assert response.json() == {"message": message}
    assert state_of(op_id) == state
    assert stored_uploads() == []


@pytest.mark.parametrize("state", [S.PAUSED, S.FAILED])
def test_upload_resumes_a_paused_or_failed_operation_without_a_file(api, op_in, state):
    op_id = op_in(state, started=True, error="boom" if state == S.FAILED else "")
    response = api.post("/upload/", {"op_id": op_id})
    assert response.status_code == 202
    body = response.json()
    assert set(body) == STATUS_FIELDS | {"message"}
    assert body["message"] == "upload resumed"
    assert body["state"] == "queued"
    assert body["error"] == ""
    assert state_of(op_id) == S.QUEUED


def test_upload_resumes_with_the_same_file_and_lines(api, op_in):
    op_id = op_in(S.PAUSED, started=True, lines_finished=2)
    response = api.post("/upload/", {"op_id": op_id, "lines": 2, "file": upload_file(csv_bytes(3))})
    assert response.status_code == 202
    assert response.json()["message"] == "upload resumed"
    assert response.json()["lines_finished"] == 2
    assert state_of(op_id) == S.QUEUED
    assert len(stored_uploads()) == 1  # the re-sent file is only compared, not stored again


def test_upload_resume_with_a_different_file(api, op_in):
    op_id = op_in(S.PAUSED, started=True)
    response = api.post("/upload/", {"op_id": op_id, "file": upload_file(csv_bytes(4))})
    assert response.status_code == 409
    assert response.json() == {"message": "The file differs from the one uploaded first"}
    assert state_of(op_id) == S.PAUSED


def test_upload_resume_with_lines_that_disagree(api, op_in):
    op_id = op_in(S.PAUSED, started=True, lines_finished=2)
    response = api.post("/upload/", {"op_id": op_id, "lines": 1, "file": upload_file(csv_bytes(3))})
    assert response.status_code == 409
    assert response.json() == {"message": "lines is 1 but the server has finished 2 lines"}
    assert state_of(op_id) == S.PAUSED


def test_upload_start_with_lines_that_disagree(api, register):
    op_id = register()
    response = api.post("/upload/", {"op_id": op_id, "lines": 5, "file": upload_file(csv_bytes(3))})
    assert response.status_code == 409
    assert response.json() == {"message": "lines is 5 but the server has finished 0 lines"}
    assert state_of(op_id) == S.REGISTERED
    assert stored_uploads() == []


@pytest.mark.parametrize("lines", ["many", "1.9", "1_0", "\u0663", "9" * 5000])
def test_upload_lines_not_a_number(api, register, lines):
    op_id = register()
    response = api.post("/upload/", {"op_id": op_id, "lines": lines, "file": upload_file(csv_bytes(3))})
    assert response.status_code == 400
    assert response.json() == {"message": "lines must be an integer"}
    assert state_of(op_id) == S.REGISTERED


@pytest.mark.parametrize("lines", [0.0, 1.9, True, [0], {"n": 0}])
def test_upload_lines_must_be_a_json_integer(api, register, lines):
    op_id = register()
    response = api.post("/upload/", {"op_id": op_id, "lines": lines}, format="json")
    assert response.status_code == 400
    assert response.json() == {"message": "lines must be an integer"}
    assert state_of(op_id) == S.REGISTERED


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "The file is empty"),
        (b"name,city\n\xff\xfe,x\n", "The file is not UTF-8 text"),
        (b"name,city\nbob\x00,x\n", "The file is not text (it contains NUL bytes)"),
        (b"\n\n\n", "The file has no header row"),
        (b"name,city,name\na,b,c\n", "The header names column 'name' twice"),
    ],
    ids=["empty", "not-utf8", "nul-bytes", "no-header", "duplicate-columns"],
)
def test_upload_unusable_file(api, register, content, message):
    op_id = register()
    response = api.post("/upload/", {"op_id": op_id, "file": upload_file(content)})
    assert response.status_code == 400
    assert response.json() == {"message": message}
    op = Operation.objects.get(pk=op_id)
    assert op.state == S.REGISTERED
    assert not op.file
    assert stored_uploads() == []


@pytest.mark.parametrize("encoding", ["multipart", "json", "form"])
def test_upload_without_a_file(api, register, encoding):
    op_id = register()
    response = post(api, "/upload/", {"op_id": op_id}, encoding)
    assert response.status_code == 400
    assert response.json() == {"message": "A CSV file is required in the 'file' field (multipart/form-data)"}
    assert state_of(op_id) == S.REGISTERED


def test_upload_over_the_limit(api, register, settings):
    settings.LONG_TASK_MAX_UPLOAD_BYTES = 100
    op_id = register()
    response = api.post("/upload/", {"op_id": op_id, "file": upload_file(csv_bytes(20))})
    assert response.status_code == 413
    assert response.json() == {
        "message": f"The file is larger than the upload limit of {settings.LONG_TASK_MAX_UPLOAD_BYTES} bytes"
    }
    assert state_of(op_id) == S.REGISTERED
    assert stored_uploads() == []


def test_upload_far_over_the_limit_is_refused_before_reading(api, register, settings):
    # A body longer than the limit plus the multipart slack is refused without reading it.
    settings.LONG_TASK_MAX_UPLOAD_BYTES = 100
    op_id = register()
    response = api.post("/upload/", {"op_id": op_id, "file": upload_file(csv_bytes(30_000))})
    assert response.status_code == 413
    assert response.json() == {
        "message": f"The file is larger than the upload limit of {settings.LONG_TASK_MAX_UPLOAD_BYTES} bytes"
    }
    assert state_of(op_id) == S.REGISTERED
    assert stored_uploads() == []


def test_upload_at_the_limit_is_accepted(api, register, settings):
    content = csv_bytes(5)
    settings.LONG_TASK_MAX_UPLOAD_BYTES = len(content)
    op_id = register()
    response = api.post("/upload/", {"op_id": op_id, "file": upload_file(content)})
    assert response.status_code == 202
    assert response.json()["message"] == "upload started"


# --- /pause/ --------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize(("state", "expected"), [(S.QUEUED, "paused"), (S.RUNNING, "pausing")])
def test_pause(api, op_in, state, expected, encoding):
    op_id = op_in(state, started=True, lines_finished=2)
    response = post(api, "/pause/", {"op_id": op_id}, encoding)
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    assert body["state"] == expected
    assert body["lines_finished"] == 2
    assert body["is_paused"] is (expected == "paused")
    assert set(body) == STATUS_FIELDS | {"success"}
    assert state_of(op_id) == expected


def test_pause_wait_is_bounded(api, op_in, settings):
    settings.LONG_TASK_MAX_WAIT_SECONDS = 0.2
    op_id = op_in(S.RUNNING)
    started = time.monotonic()
    response = api.post("/pause/", {"op_id": op_id, "wait": 3600}, format="json")
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert response.json()["state"] == "pausing"  # no worker acknowledges in this test
    assert 0.2 <= elapsed < 2


def test_pause_wait_returns_at_once_when_already_paused(api, op_in):
    op_id = op_in(S.QUEUED)
    started = time.monotonic()
    response = api.post("/pause/", {"op_id": op_id, "wait": 5}, format="json")
    assert response.status_code == 200
    assert response.json()["state"] == "paused"
    assert time.monotonic() - started < 1


# --- /resume/ -------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("state", [S.PAUSED, S.FAILED])
def test_resume(api, op_in, state, encoding):
    op_id = op_in(state, started=True, lines_finished=1, error="boom" if state == S.FAILED else "")
    response = post(api, "/resume/", {"op_id": op_id}, encoding)
    assert response.status_code == 202
    body = response.json()
    assert body["success"] is True
    assert body["state"] == "queued"
    assert body["lines_finished"] == 1
    assert body["error"] == ""
    assert set(body) == STATUS_FIELDS | {"success"}
    assert state_of(op_id) == S.QUEUED


# --- /terminate/ ----------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize(
    ("state", "expected"),
    [(S.REGISTERED, "terminated"), (S.PAUSED, "terminating"), (S.FAILED, "terminating")],
)
def test_terminate(api, op_in, state, expected, encoding):
    op_id = op_in(state)
    response = post(api, "/terminate/", {"op_id": op_id}, encoding)
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    assert body["state"] == expected
    assert body["is_terminated"] is (expected == "terminated")
    assert set(body) == STATUS_FIELDS | {"success"}
    assert state_of(op_id) == expected


@pytest.mark.parametrize("state", [S.QUEUED, S.RUNNING, S.PAUSING])
@pytest.mark.parametrize("force", [None, False, "false", "0", "no"])
def test_terminate_without_force_asks_to_pause(api, op_in, state, force):
    op_id = op_in(state)
    body = {"op_id": op_id} if force is None else {"op_id": op_id, "force": force}
    response = api.post("/terminate/", body, format="json")
    assert response.status_code == 409
    assert response.json() == {"message": "Pause the operation", "hint": "force=true terminates a running operation"}
    assert state_of(op_id) == state


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("force", [True, "true", "1", "yes", "on", "TRUE"])
@pytest.mark.parametrize("state", [S.QUEUED, S.RUNNING, S.PAUSING])
def test_terminate_with_force(api, op_in, state, force, encoding):
    if encoding != "json" and force is True:
        force = "true"
    op_id = op_in(state)
    response = post(api, "/terminate/", {"op_id": op_id, "force": force}, encoding)
    assert response.status_code == 200
    assert response.json()["success"] is True
    assert response.json()["state"] == "terminating"
    assert state_of(op_id) == S.TERMINATING


@pytest.mark.parametrize("state", [S.RUNNING, S.PAUSING])
def test_terminate_takes_force_from_the_query_string_beside_a_body(api, op_in, state):
    op_id = op_in(state)
    response = api.post("/terminate/?force=true", {"op_id": op_id}, format="json")
    assert response.status_code == 200, response.content
    assert state_of(op_id) == S.TERMINATING
    other = op_in(state)
    response = api.post(f"/api/operations/{other}/terminate/?force=true", {"wait": 0}, format="json")
    assert response.status_code == 200, response.content
    assert state_of(other) == S.TERMINATING


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("rest", [False, True], ids=["seed", "rest"])
def test_a_query_string_beside_a_body_of_every_encoding(api, op_in, encoding, rest):
    """`curl -d op_id=N ".../terminate/?force=true"`, a form body with a query string: the two
    are merged value by value, not refused."""
    op_id = op_in(S.RUNNING)
    if rest:
        response = post(api, f"/api/operations/{op_id}/terminate/?force=true", {"wait": 0}, encoding)
    else:
        response = post(api, "/terminate/?force=true", {"op_id": op_id}, encoding)
    assert response.status_code == 200, response.content
    assert state_of(op_id) == S.TERMINATING


def test_the_body_wins_over_the_query_string(api, op_in):
    op_id = op_in(S.RUNNING)
    response = api.post("/terminate/?force=true", {"op_id": op_id, "force": "false"}, format="json")
    assert response.status_code == 409
    assert response.json() == {"message": "Pause the operation", "hint": "force=true terminates a running operation"}


# --- refusals of the control verbs (§4: one exact message per state) -------------------------

REFUSALS = [
    ("/pause/", {}, S.PAUSED, "Upload already paused"),
    ("/pause/", {}, S.PAUSING, "Upload already paused"),
    ("/pause/", {}, S.REGISTERED, "Upload not started"),
    ("/pause/", {}, S.COMPLETED, "Upload already finished"),
    ("/pause/", {}, S.FAILED, "Upload failed: resume or terminate it"),
    ("/pause/", {}, S.TERMINATING, "Upload already terminated"),
    ("/pause/", {}, S.TERMINATED, "Upload already terminated"),
    ("/resume/", {}, S.REGISTERED, "Upload not started"),
    ("/resume/", {}, S.QUEUED, "Upload already running"),
    ("/resume/", {}, S.RUNNING, "Upload already running"),
    ("/resume/", {}, S.PAUSING, "Upload already running"),
    ("/resume/", {}, S.COMPLETED, "Upload already finished"),
    ("/resume/", {}, S.TERMINATING, "Upload already terminated"),
    ("/resume/", {}, S.TERMINATED, "Upload already terminated"),
    *(
        ("/terminate/", {"force": force}, state, message)
        for force in (False, True)
        for state, message in [
            (S.TERMINATING, "Upload already terminated"),
            (S.TERMINATED, "Upload already terminated"),
            (S.COMPLETED, "Upload already finished"),
        ]
    ),
]


@pytest.mark.parametrize(("url", "extra", "state", "message"), REFUSALS)
def test_refused_by_state(api, op_in, url, extra, state, message):
    op_id = op_in(state)
    response = api.post(url, {"op_id": op_id, **extra}, format="json")
    assert response.status_code == 409
    assert response.json() == {"message": message}
    assert state_of(op_id) == state


@pytest.mark.parametrize(("url", "extra"), [("/pause/", {}), ("/resume/", {}), ("/terminate/", {"force": True})])
def test_control_of_a_missing_operation(api, url, extra):
    response = api.post(url, {"op_id": 424242, **extra}, format="json")
    assert response.status_code == 404
    assert response.json() == MISSING


# --- /get_status/ ---------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_get_status_post(api, register, encoding):
    op_id = register()
    response = post(api, "/get_status/", {"op_id": op_id}, encoding)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == STATUS_FIELDS
    assert {key: body[key] for key in STATUS_FIELDS - {"created_at", "updated_at"}} == {
        "op_id": op_id,
        "op_type": "Upload",
        "state": "registered",
        "lines_finished": 0,
        "is_finished": False,
        "is_paused": False,
        "is_terminated": False,
        "lines_failed": 0,
        "total_lines": None,
        "percent": None,
        "rows_per_second": None,
        "eta_seconds": None,
        "error": "",
        "started_at": None,
        "finished_at": None,
    }
    assert body["created_at"] and body["updated_at"]


def test_get_status_get_query(api, register):
    op_id = register()
    response = api.get("/get_status/", {"op_id": op_id})
    assert response.status_code == 200
    assert response.json()["op_id"] == op_id
    assert response.json()["state"] == "registered"


@pytest.mark.parametrize(
    ("state", "fields", "flags"),
    [
        (S.COMPLETED, {"lines_finished": 3, "total_lines": 3}, (True, False, False)),
        (S.PAUSED, {"lines_finished": 1}, (False, True, False)),
        (S.TERMINATED, {}, (False, False, True)),
        (S.FAILED, {"error": "line 2: bad"}, (False, False, False)),
    ],
)
def test_get_status_flags(api, op_in, state, fields, flags):
    op_id = op_in(state, started=True, **fields)
    body = api.get("/get_status/", {"op_id": op_id}).json()
    assert (body["is_finished"], body["is_paused"], body["is_terminated"]) == flags
    assert body["state"] == state
    for key, value in fields.items():
        assert body[key] == value
    if state == S.COMPLETED:
        assert body["percent"] == 100.0


@pytest.mark.parametrize("method", ["get", "post"])
def test_get_status_missing_operation(api, method):
    response = getattr(api, method)("/get_status/", {"op_id": 424242})
    assert response.status_code == 404
    assert response.json() == MISSING


def test_get_status_largest_id_is_not_found(api):
    response = api.post("/get_status/", {"op_id": 2**63 - 1}, format="json")
    assert response.status_code == 404
    assert response.json() == MISSING


# --- bad input of any shape: 4xx JSON, never 500 ----------------------------------------------

SEED_WITH_OP_ID = ["/upload/", "/pause/", "/resume/", "/terminate/", "/get_status/"]
BAD_OP_IDS = [
    (None, "op_id is required"),
    ("", "op_id is required"),
    ("abc", "op_id must be a positive integer"),
    (-1, "op_id must be a positive integer"),
    ("-1", "op_id must be a positive integer"),
    (0, "op_id must be a positive integer"),
    (1e30, "op_id must be a positive integer"),
    ("1e30", "op_id must be a positive integer"),
    (10**30, "op_id must be a positive integer"),
    (2**63, "op_id must be a positive integer"),
    ("9" * 5000, "op_id must be a positive integer"),
    (1.5, "op_id must be a positive integer"),
    ("1_0", "op_id must be a positive integer"),
    ("\u0663", "op_id must be a positive integer"),
    (True, "op_id must be a positive integer"),
    (False, "op_id must be a positive integer"),
    ([1], "op_id must be a positive integer"),
    ({"id": 1}, "op_id must be a positive integer"),
    ("1\x00", "op_id must be a positive integer"),
]


# Form and multipart bodies carry strings: these as well.
BAD_FORM_OP_IDS = [
    ("abc", "op_id must be a positive integer"),
    ("-1", "op_id must be a positive integer"),
    ("0", "op_id must be a positive integer"),
    ("1e30", "op_id must be a positive integer"),
    ("true", "op_id must be a positive integer"),
    (" ", "op_id must be a positive integer"),
    ("1.0", "op_id must be a positive integer"),
]
REST_WITH_ID = ["", "start/", "pause/", "resume/", "terminate/", "events/", "row-errors/", "rows/"]


def test_the_op_id_parser_refuses_every_bad_id():
    """Every bad id, as the JSON parser and a form hand it over, is a BadInput with its
    message. The endpoints all read op_id with this parser (the wiring tests below)."""
    from django.http import QueryDict

    from operations.api import parsing
    from operations.errors import BadInput

    def refusal(data) -> str | None:
        try:
            parsing.op_id(data)
        except BadInput as exc:
            return exc.message
        return None

    for op_id, message in BAD_OP_IDS:
        body = {} if op_id is None else {"op_id": op_id}
        parsed = parsing.JSONParser().parse(io.BytesIO(json.dumps(body).encode()))
        assert refusal(parsed) == message, op_id
    for op_id, message in BAD_FORM_OP_IDS:
        assert refusal(QueryDict(urlencode({"op_id": op_id}))) == message, op_id
    assert parsing.op_id({"op_id": "42"}) == parsing.op_id({"op_id": 42}) == 42


@pytest.fixture
def parser_calls(monkeypatch) -> list:
    """The values every request hands to the op_id parser."""
    from operations.api import parsing

    calls = []
    real = parsing.op_id

    def op_id(data):
        calls.append(data.get("op_id"))
        return real(data)

    monkeypatch.setattr(parsing, "op_id", op_id)
    return calls


@pytest.mark.parametrize(
    ("url", "encoding"), list(zip(SEED_WITH_OP_ID, ["multipart", "json", "form", "json", "json"], strict=True))
)
def test_each_seed_endpoint_reads_op_id_with_the_parser(api, parser_calls, url, encoding):
    response = post(api, url, {"op_id": "abc"}, encoding)
    assert (response.status_code, response.json()) == (400, {"message": "op_id must be a positive integer"})
    assert parser_calls == ["abc"]


def test_get_status_reads_the_query_with_the_parser(api, parser_calls):
    response = api.get("/get_status/", {"op_id": "-1"})
    assert (response.status_code, response.json()) == (400, {"message": "op_id must be a positive integer"})
    assert parser_calls == ["-1"]


@pytest.mark.parametrize("sub", REST_WITH_ID)
def test_each_rest_endpoint_reads_its_id_with_the_parser(api, parser_calls, sub):
    method = api.get if sub in ("", "events/", "row-errors/", "rows/") else api.post
    response = method(f"/api/operations/{'9' * 30}/{sub}")
    assert (response.status_code, response.json()) == (400, {"message": "op_id must be a positive integer"})
    assert [str(value) for value in parser_calls] == ["9" * 30]  # /rows/ takes it as an int


@pytest.mark.parametrize("url", ["/register/", *SEED_WITH_OP_ID])
@pytest.mark.parametrize(
    "body",
    ["[1, 2]", '"text"', "42", "null", "true"],
    ids=["list", "string", "number", "null", "bool"],
)
def test_body_not_an_object(api, url, body):
    response = api.post(url, body, content_type="application/json")
    assert response.status_code == 400
    assert response.json() == {"message": "The request body must be a JSON object or a form"}


@pytest.mark.parametrize("url", ["/register/", *SEED_WITH_OP_ID])
@pytest.mark.parametrize(
    "body",
    [b'{"op_id": ', b"{op_id: 1}", b"\xff\xfe{}", b'{"op_id": NaN}', b"[" * 100_000 + b"]" * 100_000],
    ids=["truncated", "unquoted", "not-utf8", "nan", "deeply-nested"],
)
def test_malformed_json(api, url, body):
    response = api.post(url, body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["message"].startswith("JSON parse error")


@pytest.mark.parametrize("url", ["/register/", *SEED_WITH_OP_ID])
def test_unsupported_media_type(api, url):
    response = api.post(url, "op_id=1", content_type="text/plain")
    assert response.status_code == 415
    assert response.json() == {"message": 'Unsupported media type "text/plain" in request.'}


@pytest.mark.parametrize("url", ["/register/", *SEED_WITH_OP_ID])
def test_multipart_without_boundary(api, url):
    response = api.post(url, b"garbage", content_type="multipart/form-data")
    assert response.status_code == 400
    assert response.json()["message"].startswith("Multipart form parse error")


@pytest.mark.parametrize("url", ["/register/", "/upload/", "/pause/", "/resume/", "/terminate/"])
def test_seed_endpoints_are_post_only(api, url):
    response = api.get(url)
    assert response.status_code == 405
    assert response.json() == {"message": 'Method "GET" not allowed.'}


@pytest.mark.parametrize("force", ["maybe", "2", [True], {"a": 1}])
def test_terminate_bad_force(api, op_in, force):
    op_id = op_in(S.PAUSED)
    response = api.post("/terminate/", {"op_id": op_id, "force": force}, format="json")
    assert response.status_code == 400
    assert response.json() == {"message": "force must be true or false"}
    assert state_of(op_id) == S.PAUSED


@pytest.mark.parametrize("url", ["/pause/", "/terminate/"])
@pytest.mark.parametrize("wait", ["x", -1, "nan", "inf", [1], {"s": 1}])
def test_bad_wait(api, op_in, url, wait):
    op_id = op_in(S.PAUSED)
    response = api.post(url, {"op_id": op_id, "wait": wait}, format="json")
    assert response.status_code == 400
    assert response.json() == {"message": "wait must be a number of seconds"}
    assert state_of(op_id) == S.PAUSED


@pytest.mark.parametrize("url", ["/pause/", "/terminate/"])
@pytest.mark.parametrize("digits", [400, 5000])
def test_a_wait_beyond_float_range_is_a_400(api, op_in, url, digits):
    """A JSON integer of 400 digits overflows float(): still a 400, not a 500."""
    op_id = op_in(S.PAUSED)
    body = f'{{"op_id": {op_id}, "wait": 1{"0" * (digits - 1)}}}'
    response = api.post(url, body, content_type="application/json")
    assert response.status_code == 400
    assert response.json() == {"message": "wait must be a number of seconds"}
    assert state_of(op_id) == S.PAUSED


def test_bad_input_loses_nothing(api, op_in):
    """A refused request leaves the operation and its history as they were."""
    op_id = op_in(S.PAUSED, started=True, lines_finished=2)
    events = OperationEvent.objects.filter(operation_id=op_id).count()
    for body in ({"op_id": op_id, "force": "maybe"}, {"op_id": op_id, "wait": "x"}):
        assert api.post("/terminate/", body, format="json").status_code == 400
    assert api.post("/upload/", {"op_id": op_id, "lines": "x"}).status_code == 400
    op = Operation.objects.get(pk=op_id)
    assert (op.state, op.lines_finished) == (S.PAUSED, 2)
    assert OperationEvent.objects.filter(operation_id=op_id).count() == events
    assert (Path(settings.MEDIA_ROOT) / op.file.name).exists()


# --- REST API (§6) ----------------------------------------------------------------------------


def test_rest_list_is_paginated(api, user):
    Operation.objects.bulk_create([Operation(owner=user) for _ in range(51)])
    first = api.get("/api/operations/")
    assert first.status_code == 200
    body = first.json()
    assert body["count"] == 51
    assert len(body["results"]) == 50
    assert body["previous"] is None
    assert "page=2" in body["next"]
    ids = [item["op_id"] for item in body["results"]]
    assert ids == sorted(ids, reverse=True)  # newest first
    assert set(body["results"][0]) == STATUS_FIELDS | LIST_FIELDS

    second = api.get("/api/operations/", {"page": 2})
    assert second.status_code == 200
    assert len(second.json()["results"]) == 1
    assert second.json()["next"] is None

    beyond = api.get("/api/operations/", {"page": 3})
    assert beyond.status_code == 404
    assert beyond.json() == {"message": "Invalid page."}


def test_rest_list_names_the_file_how_long_it_ran_and_why_it_failed(api, user):
    now = timezone.now()
    failed = operation_in_state(
        S.FAILED,
        owner=user,
        file_name="people.csv",
        error="line 7: expected 4 fields, found 3",
        started_at=now - timedelta(seconds=65),
        finished_at=now,
    )
    running = operation_in_state(S.RUNNING, owner=user, file_name="big.csv", started_at=now - timedelta(seconds=30))
    fresh = operation_in_state(S.REGISTERED, owner=user)
    by_id = {item["op_id"]: item for item in api.get("/api/operations/").json()["results"]}
    assert (by_id[failed.pk]["file_name"], by_id[failed.pk]["duration_seconds"]) == ("people.csv", 65.0)
    assert by_id[failed.pk]["error"] == "line 7: expected 4 fields, found 3" and by_id[failed.pk]["created_at"]
    assert by_id[running.pk]["file_name"] == "big.csv" and 30.0 <= by_id[running.pk]["duration_seconds"] < 90
    assert (by_id[fresh.pk]["file_name"], by_id[fresh.pk]["duration_seconds"]) == ("", None)
    # The status object stays SPEC §5's.
    assert set(api.get(f"/api/operations/{failed.pk}/").json()) == STATUS_FIELDS


@pytest.mark.parametrize(("content", "message"), [(b"", "The file is empty"), (b"a,b\n\xff\n", "not UTF-8")])
def test_a_refused_upload_says_why_in_the_operations_history(api, register, content, message):
    op_id = register()
    response = api.post("/upload/", {"op_id": op_id, "file": upload_file(content)}, format="multipart")
    assert response.status_code == 400
    assert api.post("/terminate/", {"op_id": op_id}).json()["state"] == S.TERMINATED  # the client withdraws it
    events = api.get(f"/api/operations/{op_id}/events/").json()["results"]
    refused = [event for event in events if event["detail"].startswith("input refused: ")]
    assert len(refused) == 1 and message in refused[0]["detail"], events
    assert (refused[0]["from_state"], refused[0]["to_state"]) == (S.REGISTERED, S.REGISTERED)
    assert events[-1]["to_state"] == S.TERMINATED


# Over the limit by its Content-Length (and the multipart slack): refused before a byte is read.
FAR_TOO_LARGE = b"a\n" + b"x" * (1024**2 + 1024)


def refusals(op_id: int) -> list[str]:
    details = OperationEvent.objects.filter(operation_id=op_id).values_list("detail", flat=True)
    return [detail for detail in details if detail.startswith("input refused: ")]


@pytest.mark.parametrize("url", ["/upload/?op_id={op_id}", "/api/operations/{op_id}/start/"])
def test_an_upload_refused_before_its_body_is_read_says_why_in_the_history(api, register, settings, url):
    """Refused unread, the body's op_id is unknown: the one in the query string (or the path)
    names the operation whose history records why (the client then withdraws it)."""
    settings.LONG_TASK_MAX_UPLOAD_BYTES = 100
    op_id = register()
    response = api.post(
        url.format(op_id=op_id), {"op_id": op_id, "file": upload_file(FAR_TOO_LARGE)}, format="multipart"
    )
    assert response.status_code == 413
    assert refusals(op_id) == ["input refused: The file is larger than the upload limit of 100 bytes"]
    assert api.post("/terminate/", {"op_id": op_id}).json()["state"] == S.TERMINATED


def test_a_refusal_is_recorded_only_for_an_operation_named_outside_the_body_and_the_callers(
    api, register, settings, other_user
):
    settings.LONG_TASK_MAX_UPLOAD_BYTES = 100
    op_id = register()
    body = {"op_id": op_id, "file": upload_file(FAR_TOO_LARGE)}
    assert api.post("/upload/", body, format="multipart").status_code == 413
    assert refusals(op_id) == []  # in the body only: never read
    theirs = Operation.objects.create(owner=other_user)
    body = {"op_id": theirs.pk, "file": upload_file(FAR_TOO_LARGE)}
    response = api.post(f"/upload/?op_id={theirs.pk}", body, format="multipart")
    assert response.status_code == 413
    assert response.json() == {"message": "The file is larger than the upload limit of 100 bytes"}
    assert refusals(theirs.pk) == []


def test_rest_list_filters(api, op_in):
    paused = op_in(S.PAUSED)
    queued = op_in(S.QUEUED)
    registered = op_in(S.REGISTERED)

    def ids(**params):
        response = api.get("/api/operations/", params)
        assert response.status_code == 200
        return [item["op_id"] for item in response.json()["results"]]

    assert ids() == [registered, queued, paused]
    assert ids(state="paused") == [paused]
    assert ids(state="queued") == [queued]
    assert ids(state="completed") == []
    assert ids(op_type="Upload") == [registered, queued, paused]
    assert ids(op_type="Nope") == []
    assert ids(op_type="Upload", state="registered") == [registered]


@pytest.mark.parametrize("state", ["bogus", "", "PAUSED"])
def test_rest_list_invalid_state_filter(api, state):
    response = api.get("/api/operations/", {"state": state})
    assert response.status_code == 400
    assert response.json() == {"message": "state must be one of: " + ", ".join(ALL_STATES)}


def test_rest_list_op_type_filter_with_nul_byte(api, register):
    # PostgreSQL cannot compare text with a NUL byte: refused before any query.
    register()
    response = api.get("/api/operations/", {"op_type": "Up\x00load"})
    assert response.status_code == 400
    assert response.json() == {"message": "The request contains a NUL byte"}


def test_rest_list_unknown_op_type_matches_nothing(api, register):
    register()
    response = api.get("/api/operations/", {"op_type": "Nope"})
    assert response.status_code == 200
    assert response.json()["results"] == []


@pytest.mark.parametrize(
    "header", [{"HTTP_AUTHORIZATION": "Token abc\x00def"}, {"HTTP_COOKIE": "sessionid=abc\x00defghijk"}]
)
def test_nul_bytes_in_headers_are_refused(api, header):
    response = APIClient().post("/register/", {}, format="json", **header)
    assert response.status_code == 400
    assert response.json() == {"message": "The request contains a NUL byte"}


def test_rest_create(api):
    response = api.post("/api/operations/", {}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert set(body) == STATUS_FIELDS
    assert body["op_id"] == Operation.objects.get().pk
    assert (body["op_type"], body["state"]) == ("Upload", "registered")


def test_rest_create_unknown_type(api):
    response = api.post("/api/operations/", {"op_type": "Nope"}, format="json")
    assert response.status_code == 400
    assert response.json() == {"message": "Unknown op_type 'Nope'. Known types: Export, Upload"}


def test_rest_detail(api, register):
    op_id = register()
    response = api.get(f"/api/operations/{op_id}/")
    assert response.status_code == 200
    assert set(response.json()) == STATUS_FIELDS
    assert response.json()["op_id"] == op_id
    assert response.json() == api.post("/get_status/", {"op_id": op_id}).json()


def test_rest_detail_missing(api):
    response = api.get("/api/operations/424242/")
    assert response.status_code == 404
    assert response.json() == MISSING


@pytest.mark.parametrize("pk", ["abc", "-1", "1.5"])
def test_rest_detail_non_numeric_id(api, pk):
    response = api.get(f"/api/operations/{pk}/")
    assert response.status_code == 404
    assert response.json() == {"message": "Not found"}


@pytest.mark.parametrize("pk", ["0", "9" * 30])
def test_rest_detail_out_of_range_id(api, pk):
    response = api.get(f"/api/operations/{pk}/")
    assert response.status_code == 400
    assert response.json() == {"message": "op_id must be a positive integer"}


def test_rest_start_pause_resume_terminate(api):
    op_id = api.post("/api/operations/", {}, format="json").json()["op_id"]
    base = f"/api/operations/{op_id}"

    started = api.post(f"{base}/start/", {"file": upload_file(csv_bytes(3))})
    assert started.status_code == 202
    assert (started.json()["message"], started.json()["state"]) == ("upload started", "queued")

    again = api.post(f"{base}/start/", {"file": upload_file(csv_bytes(3))})
    assert again.status_code == 409
    assert again.json() == {"message": "Upload already running"}

    refused = api.post(f"{base}/terminate/")
    assert refused.status_code == 409
    assert refused.json() == {"message": "Pause the operation", "hint": "force=true terminates a running operation"}

    paused = api.post(f"{base}/pause/")
    assert paused.status_code == 200
    assert (paused.json()["success"], paused.json()["state"]) == (True, "paused")

    paused_again = api.post(f"{base}/pause/")
    assert paused_again.status_code == 409
    assert paused_again.json() == {"message": "Upload already paused"}

    resumed = api.post(f"{base}/resume/")
    assert resumed.status_code == 202
    assert (resumed.json()["success"], resumed.json()["state"]) == (True, "queued")

    terminated = api.post(f"{base}/terminate/", {"force": True}, format="json")
    assert terminated.status_code == 200
    assert (terminated.json()["success"], terminated.json()["state"]) == (True, "terminating")

    gone = api.post(f"{base}/resume/")
    assert gone.status_code == 409
    assert gone.json() == {"message": "Upload already terminated"}


def test_rest_start_resumes_a_paused_operation(api, op_in):
    op_id = op_in(S.PAUSED, started=True)
    response = api.post(f"/api/operations/{op_id}/start/", {"file": upload_file(csv_bytes(3))})
    assert response.status_code == 202
    assert (response.json()["message"], response.json()["state"]) == ("upload resumed", "queued")


def test_rest_start_errors(api, register, settings):
    op_id = register()
    base = f"/api/operations/{op_id}"
    missing_file = api.post(f"{base}/start/", {})
    assert missing_file.status_code == 400
    assert missing_file.json() == {"message": "A CSV file is required in the 'file' field (multipart/form-data)"}
    settings.LONG_TASK_MAX_UPLOAD_BYTES = 10
    too_large = api.post(f"{base}/start/", {"file": upload_file(csv_bytes(3))})
    assert too_large.status_code == 413
    assert too_large.json() == {
        "message": f"The file is larger than the upload limit of {settings.LONG_TASK_MAX_UPLOAD_BYTES} bytes"
    }
    assert state_of(op_id) == S.REGISTERED


@pytest.mark.parametrize("action", ["start", "pause", "resume", "terminate"])
def test_rest_actions_on_missing_operation(api, action):
    response = api.post(f"/api/operations/424242/{action}/")
    assert response.status_code == 404
    assert response.json() == MISSING


def test_rest_events(api, register):
    op_id = register()
    api.post("/upload/", {"op_id": op_id, "file": upload_file(csv_bytes(2))})
    api.post("/pause/", {"op_id": op_id})
    response = api.get(f"/api/operations/{op_id}/events/")
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 3
    assert [(e["actor"], e["from_state"], e["to_state"]) for e in body["results"]] == [
        ("user:alice", "", "registered"),
        ("user:alice", "registered", "queued"),
        ("user:alice", "queued", "paused"),
    ]
    assert set(body["results"][0]) == {"at", "actor", "from_state", "to_state", "detail"}


def test_rest_row_errors(api, op_in):
    op_id = op_in(S.PAUSED, started=True, lines_finished=5, lines_failed=2)
    RowError.objects.create(operation_id=op_id, line_number=4, reason="expected 4 fields, found 2", raw="a,b")
    RowError.objects.create(operation_id=op_id, line_number=2, reason="expected 4 fields, found 5", raw="a,b,c,d,e")
    response = api.get(f"/api/operations/{op_id}/row-errors/")
    assert response.status_code == 200
    assert response.json()["count"] == 2
    assert response.json()["results"] == [
        {"line_number": 2, "reason": "expected 4 fields, found 5", "raw": "a,b,c,d,e"},
        {"line_number": 4, "reason": "expected 4 fields, found 2", "raw": "a,b"},
    ]


@pytest.mark.parametrize("sub", ["events", "row-errors"])
def test_rest_history_of_missing_operation(api, sub):
    response = api.get(f"/api/operations/424242/{sub}/")
    assert response.status_code == 404
    assert response.json() == MISSING


def test_openapi_schema(api):
    response = api.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    schema = json.loads(response.content)
    assert schema["openapi"].startswith("3.")
    assert schema["info"]["title"] == "long_task API"
    for path in (
        "/register/",
        "/upload/",
        "/pause/",
        "/resume/",
        "/terminate/",
        "/get_status/",
        "/api/operations/",
        "/api/operations/{id}/",
        "/api/operations/{id}/start/",
        "/api/operations/{id}/pause/",
        "/api/operations/{id}/resume/",
        "/api/operations/{id}/terminate/",
        "/api/operations/{id}/events/",
        "/api/operations/{id}/row-errors/",
    ):
        assert path in schema["paths"], path
    list_parameters = {p["name"] for p in schema["paths"]["/api/operations/"]["get"]["parameters"]}
    assert {"state", "op_type", "page"} <= list_parameters


def test_openapi_schema_yaml(api):
    response = api.get("/api/schema/")
    assert response.status_code == 200
    assert b"openapi: 3." in response.content


def test_api_docs_page(api):
    response = api.get("/api/docs/")
    assert response.status_code == 200
    assert b"swagger" in response.content.lower()
