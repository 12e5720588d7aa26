"""Who may download an operation's file (SPEC §9): its owner only. A user who may view or
control everyone's operations (`view_operation`, `control_any_operation`, a superuser) sees the
operation, and acts on it if allowed, but does not get its file: 403; a user who may not see the
operation gets the 404 of a missing one. The console offers the link only to those the API
serves."""

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from tests.support import csv_bytes, token_client

pytestmark = pytest.mark.django_db

CONTENT = csv_bytes(3)
NOT_YOURS = {"message": "You may see this operation but not download its file"}
MISSING = {"message": "Operation ID Invalid"}


def user_with(django_user_model, name: str, *codenames: str, staff: bool = False):
    user = django_user_model.objects.create_user(name, password=f"{name}-pw", is_staff=staff)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return user


def download_url(op_id: int) -> str:
    return f"/api/operations/{op_id}/download/"


@pytest.fixture
def alices(start_upload) -> int:
    """alice's Upload, its file stored (downloadable while it is)."""
    return start_upload(CONTENT)


def test_the_owner_downloads_the_file(api, alices):
    response = api.get(download_url(alices))
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == CONTENT


@pytest.mark.parametrize("staff", [False, True])
def test_a_user_who_may_control_everyones_operations_may_not(alices, django_user_model, staff):
    operator = token_client(user_with(django_user_model, "operator", "control_any_operation", staff=staff))
    assert operator.get(f"/api/operations/{alices}/").status_code == 200  # sees it
    response = operator.get(download_url(alices))
    assert (response.status_code, response.json()) == (403, NOT_YOURS)


def test_a_superuser_may_not(alices, django_user_model):
    root = django_user_model.objects.create_superuser("root", password="root-pw")
    response = token_client(root).get(download_url(alices))
    assert (response.status_code, response.json()) == (403, NOT_YOURS)


@pytest.mark.parametrize("staff", [False, True])
def test_a_user_who_may_only_view_everyones_operations_may_not(alices, django_user_model, staff):
    viewer = token_client(user_with(django_user_model, "viewer", "view_operation", staff=staff))
    assert viewer.get(f"/api/operations/{alices}/").status_code == 200  # sees it
    response = viewer.get(download_url(alices))
    assert (response.status_code, response.json()) == (403, NOT_YOURS)


def test_another_user_gets_the_404_of_a_missing_operation(alices, other_user):
    response = token_client(other_user).get(download_url(alices))
    assert (response.status_code, response.json()) == (404, MISSING)


def test_a_refusal_comes_before_the_state_is_told(register, django_user_model):
    """A viewer learns nothing of the file: not even that there is none yet."""
    op_id = register()  # registered: no file
    viewer = token_client(user_with(django_user_model, "viewer", "view_operation"))
    response = viewer.get(download_url(op_id))
    assert (response.status_code, response.json()) == (403, NOT_YOURS)


def test_the_console_links_the_file_only_for_those_who_may_download_it(client, alices, user, django_user_model):
    link = f'href="{download_url(alices)}"'
    page = reverse("admin:operations_operation_change", args=[alices])

    viewer = user_with(django_user_model, "viewer", "view_operation", staff=True)
    client.force_login(viewer)
    response = client.get(page)
    assert response.status_code == 200
    assert link not in response.content.decode()

    operator = user_with(django_user_model, "operator", "control_any_operation", staff=True)
    client.force_login(operator)
    html = client.get(page).content.decode()
    assert response.status_code == 200
    assert link not in html and "For its owner only" in html

    # The owner, staff with the view permission only: their own file.
    user.is_staff = True
    user.save()
    user.user_permissions.add(Permission.objects.get(codename="view_operation"))
    client.force_login(user)
    assert client.get(page).content.decode().count(link) == 2
