"""The admin's login page and the API's (DRF's browsable-API login) count failed passwords with
the same counters as HTTP basic: past the limit, even the right password gets a 429 with
Retry-After, without its hash, until the window has passed; per user name from an address, and
per address whatever the user names."""

import base64
from datetime import timedelta

import pytest
from django.contrib.auth.hashers import check_password
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

LOGIN_PAGES = ["/admin/login/", "/api/auth/login/"]


@pytest.fixture
def rates(settings):
    def set_rates(**rates: str) -> None:
        settings.LONG_TASK_THROTTLE_RATES = {**settings.LONG_TASK_THROTTLE_RATES, **rates}

    return set_rates


@pytest.fixture
def hashed(monkeypatch) -> list[int]:
    """One item per password checked."""
    checks = []
    monkeypatch.setattr(
        "django.contrib.auth.base_user.check_password",
        lambda *args, **kwargs: checks.append(1) or check_password(*args, **kwargs),
    )
    return checks


@pytest.fixture
def clock(monkeypatch):
    """The time the login counters see, moved forward by the test instead of waited for."""
    offset = [timedelta(0)]
    real_now = timezone.now
    monkeypatch.setattr("operations.logins.now", lambda: real_now() + offset[0])

    def advance(seconds: float) -> None:
        offset[0] += timedelta(seconds=seconds)

    return advance


def log_in(page: str, username: str, password: str, address: str = "10.0.0.1"):
    client = Client(REMOTE_ADDR=address)
    response = client.post(page, {"username": username, "password": password, "next": "/"})
    return response, client


def logged_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def assert_locked_out(response) -> None:
    assert response.status_code == 429, response.content[:300]
    assert response.json()["message"].startswith("Too many failed logins")
    assert int(response["Retry-After"]) >= 1


@pytest.mark.parametrize("page", LOGIN_PAGES)
def test_the_right_password_is_refused_after_the_limit_of_wrong_ones(
    page, staff_user, django_user_model, rates, hashed
):
    django_user_model.objects.create_user("ops", password="ops-pw", is_staff=True)
    rates(login_failures="3/minute")
    for n in range(3):
        response, client = log_in(page, "root", f"guess{n}")
        assert response.status_code == 200 and not logged_in(client)  # the form again, with its error
    response, client = log_in(page, "root", "root-pw")
    assert_locked_out(response)
    assert not logged_in(client)
    assert len(hashed) == 3
    # Another user name from the address, or the same one from another address, may log in.
    assert log_in(page, "ops", "ops-pw")[0].status_code == 302
    response, client = log_in(page, "root", "root-pw", address="10.0.0.2")
    assert response.status_code == 302 and logged_in(client)


@pytest.mark.parametrize("page", LOGIN_PAGES)
def test_the_lockout_ends_when_its_window_has_passed(page, staff_user, rates, clock):
    rates(login_failures="2/minute")
    for _ in range(2):
        assert log_in(page, "root", "wrong")[0].status_code == 200
    assert_locked_out(log_in(page, "root", "root-pw")[0])
    clock(59)
    assert_locked_out(log_in(page, "root", "root-pw")[0])
    clock(2)
    response, client = log_in(page, "root", "root-pw")
    assert response.status_code == 302 and logged_in(client)


@pytest.mark.parametrize("page", LOGIN_PAGES)
def test_an_address_is_locked_out_across_user_names(page, user, staff_user, rates):
    rates(login_failures_address="4/minute")
    for n in range(4):
        assert log_in(page, f"nobody{n}", "pw")[0].status_code == 200
    assert_locked_out(log_in(page, "root", "root-pw")[0])
    assert_locked_out(log_in(page, "alice", "alice-pw")[0])
    response, client = log_in(page, "root", "root-pw", address="10.0.0.9")
    assert response.status_code == 302 and logged_in(client)


def test_the_three_logins_share_their_counters(staff_user, rates):
    """Two wrong passwords on the admin's page, two on the API's, one over basic auth: the
    limit of five is reached for all three."""
    rates(login_failures="5/minute")
    for page in LOGIN_PAGES:
        for _ in range(2):
            assert log_in(page, "root", "wrong")[0].status_code == 200
    basic = APIClient(REMOTE_ADDR="10.0.0.1")
    basic.credentials(HTTP_AUTHORIZATION="Basic " + base64.b64encode(b"root:wrong").decode())
    assert basic.get("/api/operations/").status_code == 401
    assert basic.get("/api/operations/").status_code == 429
    for page in LOGIN_PAGES:
        assert_locked_out(log_in(page, "root", "root-pw")[0])


def test_successful_logins_do_not_count(staff_user, rates):
    rates(login_failures="2/minute", login_failures_address="2/minute")
    for _ in range(5):
        assert log_in("/admin/login/", "root", "root-pw")[0].status_code == 302
    assert log_in("/admin/login/", "root", "wrong")[0].status_code == 200
    assert log_in("/admin/login/", "root", "root-pw")[0].status_code == 302
