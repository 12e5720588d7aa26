"""Throttles (429 with Retry-After) and failed-login limits, with low rates set here (the rest of
the suite runs with rates far above what it sends). The login pages: test_login_throttle.py;
guesses in parallel against two processes: tests/processes/test_login_guessing.py."""

import base64
import time
from datetime import timedelta

import pytest
from django.contrib.auth.hashers import check_password
from django.core.cache import cache
from django.utils import timezone
from rest_framework.test import APIClient

from operations.models import LoginCounter, Operation
from tests.support import csv_bytes, token_client, upload_file

pytestmark = pytest.mark.django_db


@pytest.fixture
def rates(settings):
    def set_rates(**rates: str) -> None:
        settings.LONG_TASK_THROTTLE_RATES = {**settings.LONG_TASK_THROTTLE_RATES, **rates}

    return set_rates


def basic(username: str, password: str, address: str = "10.0.0.1") -> APIClient:
    client = APIClient(REMOTE_ADDR=address)
    client.credentials(HTTP_AUTHORIZATION="Basic " + base64.b64encode(f"{username}:{password}".encode()).decode())
    return client


def assert_throttled(response) -> None:
    assert response.status_code == 429, response.content
    assert response.json()["message"].startswith(("Request was throttled", "Too many failed logins"))
    assert int(response["Retry-After"]) >= 1


def test_failed_basic_logins_are_refused_before_the_password_is_hashed(user, rates, monkeypatch):
    """Each wrong guess would cost a PBKDF2, deliberately expensive: past the limit, none does."""
    rates(login_failures="3/minute")
    hashed = []
    monkeypatch.setattr(
        "django.contrib.auth.base_user.check_password",
        lambda *args, **kwargs: hashed.append(1) or check_password(*args, **kwargs),
    )
    answers = [basic("alice", f"guess{n}").post("/register/", {}, format="json").status_code for n in range(6)]
    assert answers == [401, 401, 401, 429, 429, 429]
    assert len(hashed) == 3
    assert_throttled(basic("alice", "alice-pw").post("/register/", {}, format="json"))  # even the right one
    # Another address, or another user name from the same address, is not locked out.
    assert basic("alice", "alice-pw", address="10.0.0.2").post("/register/", {}, format="json").status_code == 201
    assert basic("bob", "x").post("/register/", {}, format="json").status_code == 401
    assert Operation.objects.filter(owner__username="alice").count() == 1


def test_the_counters_are_in_the_database_that_every_process_shares(user, rates):
    """Not in the cache, which is per process unless configured otherwise."""
    rates(login_failures="2/minute")
    for _ in range(2):
        assert basic("alice", "wrong").get("/api/operations/").status_code == 401
    cache.clear()
    assert basic("alice", "alice-pw").get("/api/operations/").status_code == 429
    assert list(LoginCounter.objects.values_list("count", flat=True)) == [2, 2]  # the name, the address


def test_a_right_password_gives_its_place_back(user, rates):
    rates(login_failures="2/minute", login_failures_address="2/minute")
    for _ in range(5):
        assert basic("alice", "alice-pw").get("/api/operations/").status_code == 200
    assert set(LoginCounter.objects.values_list("count", flat=True)) == {0}
    assert basic("alice", "wrong").get("/api/operations/").status_code == 401
    assert basic("alice", "alice-pw").get("/api/operations/").status_code == 200


def test_counters_whose_window_ended_are_deleted(user, rates):
    """Each new counter deletes a few long ended ones: the table stays as small as the recent
    logins, whatever the number of addresses and names tried."""
    rates(login_failures="2/second", login_failures_address="100/second")
    long_ago = timezone.now() - timedelta(hours=1)
    LoginCounter.objects.bulk_create(LoginCounter(key=f"old{n}", count=3, window_ends=long_ago) for n in range(15))
    for n in range(3):
        assert basic(f"nobody{n}", "pw").get("/api/operations/").status_code == 401
    assert not LoginCounter.objects.filter(key__startswith="old").exists()
    assert LoginCounter.objects.count() == 4  # three user names from one address, and the address


def test_unknown_user_names_count_per_address(user, rates):
    rates(login_failures_address="4/minute")
    answers = [basic(f"nobody{n}", "pw").get("/api/operations/").status_code for n in range(6)]
    assert answers == [401, 401, 401, 401, 429, 429]
    assert basic("alice", "alice-pw", address="10.0.0.9").get("/api/operations/").status_code == 200


def test_the_lockout_ends_after_its_window(user, rates, monkeypatch):
    rates(login_failures="2/second")
    for _ in range(2):
        assert basic("alice", "wrong").get("/api/operations/").status_code == 401
    assert basic("alice", "alice-pw").get("/api/operations/").status_code == 429
    time.sleep(1.1)
    assert basic("alice", "alice-pw").get("/api/operations/").status_code == 200


def test_a_forged_forwarded_for_does_not_dodge_the_limit(user, rates):
    rates(login_failures="2/minute")
    for n in range(2):
        client = basic("alice", "wrong")
        assert client.get("/api/operations/", HTTP_X_FORWARDED_FOR=f"1.2.3.{n}").status_code == 401
    assert basic("alice", "wrong").get("/api/operations/", HTTP_X_FORWARDED_FOR="9.9.9.9").status_code == 429


def test_writes_are_throttled_per_user(user, other_user, rates):
    rates(writes="3/minute")
    alice = token_client(user)
    answers = [alice.post("/register/", {}, format="json").status_code for _ in range(4)]
    assert answers == [201, 201, 201, 429]
    assert_throttled(alice.post("/api/operations/", {}, format="json"))
    op_id = Operation.objects.filter(owner=user).first().pk
    assert_throttled(alice.post("/pause/", {"op_id": op_id}, format="json"))
    # Reads are not writes; other users have their own budget.
    assert alice.post("/get_status/", {"op_id": op_id}, format="json").status_code == 200
    assert alice.get(f"/api/operations/{op_id}/").status_code == 200
    assert token_client(other_user).post("/register/", {}, format="json").status_code == 201


def test_uploads_are_throttled_per_user(user, rates):
    rates(uploads="2/minute")
    alice = token_client(user)
    ops = [alice.post("/register/", {}, format="json").json()["op_id"] for _ in range(3)]
    for op_id in ops[:2]:
        assert alice.post("/upload/", {"op_id": op_id, "file": upload_file(csv_bytes(2))}).status_code == 202
    assert_throttled(alice.post("/upload/", {"op_id": ops[2], "file": upload_file(csv_bytes(2))}))
    assert_throttled(alice.post(f"/api/operations/{ops[2]}/start/", {"file": upload_file(csv_bytes(2))}))
    assert Operation.objects.get(pk=ops[2]).state == Operation.State.REGISTERED


def test_anonymous_requests_are_throttled_per_address(settings, rates):
    settings.LONG_TASK_ALLOW_ANONYMOUS = True
    rates(anonymous="2/minute")
    answers = [APIClient(REMOTE_ADDR="10.0.0.5").get("/api/operations/").status_code for _ in range(3)]
    assert answers == [200, 200, 429]
    assert APIClient(REMOTE_ADDR="10.0.0.6").get("/api/operations/").status_code == 200


def test_registered_operations_that_never_started_have_a_quota(user, other_user, settings):
    """A fuzzer made ~2,200 operations: registering is free, so it has a bound per user."""
    settings.LONG_TASK_MAX_REGISTERED = 3
    alice = token_client(user)
    ops = [alice.post("/register/", {}, format="json").json()["op_id"] for _ in range(3)]
    refused = alice.post("/api/operations/", {}, format="json")
    assert refused.status_code == 429
    assert refused.json() == {
        "message": "You have 3 registered operations that never started (at most 3): start or terminate some first"
    }
    assert "Retry-After" not in refused  # waiting frees nothing here
    assert token_client(other_user).post("/register/", {}, format="json").status_code == 201
    # Starting (or terminating) one makes room.
    assert alice.post("/upload/", {"op_id": ops[0], "file": upload_file(csv_bytes(2))}).status_code == 202
    assert alice.post("/terminate/", {"op_id": ops[1]}, format="json").status_code == 200
    assert [alice.post("/register/", {}, format="json").status_code for _ in range(3)] == [201, 201, 429]
