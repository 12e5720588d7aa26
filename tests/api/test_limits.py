"""Every input that can make something big has a bound with a clear 4xx (SPEC §7, §8); what a
bounded input costs is measured with real processes in tests/processes/test_limits.py."""

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from operations.models import Operation
from tests.support import csv_bytes, upload_file

S = Operation.State


def wide_csv(columns: int, rows: int) -> bytes:
    header = ",".join(f"c{i}" for i in range(columns))
    row = ",".join(str(i % 10) for i in range(columns))
    return (header + "\n" + (row + "\n") * rows).encode()


# --- the header -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_header_over_the_column_limit_is_refused_at_upload(api, register, settings):
    op_id = register()
    response = api.post("/upload/", {"op_id": op_id, "file": upload_file(wide_csv(1001, 1))})
    assert response.status_code == 400
    assert response.json() == {"message": "The header has 1001 columns; at most 1000 are allowed"}
    assert Operation.objects.get(pk=op_id).state == S.REGISTERED
    settings.LONG_TASK_CSV_MAX_COLUMNS = 3
    response = api.post("/upload/", {"op_id": op_id, "file": upload_file(csv_bytes(1))})
    assert response.json() == {"message": "The header has 4 columns; at most 3 are allowed"}


@pytest.mark.django_db
def test_a_header_over_the_byte_limit_is_refused_at_upload(api, register, settings):
    settings.LONG_TASK_CSV_HEADER_BYTES = 100
    op_id = register()
    long_names = ",".join(["x" * 60, "y" * 60]) + "\n1,2\n"
    response = api.post("/upload/", {"op_id": op_id, "file": upload_file(long_names.encode())})
    assert response.status_code == 400
    assert response.json() == {"message": "The header row is longer than 100 bytes"}
    at_limit = ",".join(["x" * 49, "y" * 49]) + "\n1,2\n"  # 99 bytes and the line break
    response = api.post("/upload/", {"op_id": op_id, "file": upload_file(at_limit.encode())})
    assert response.status_code == 202, response.content


@pytest.mark.django_db
def test_the_admin_shows_a_wide_header_truncated(admin_client):
    op = Operation.objects.create(columns=[f"column{i}" for i in range(1000)])
    html = admin_client.get(reverse("admin:operations_operation_change", args=[op.pk])).content.decode()
    assert "column49, ... (1,000 columns)" in html
    assert "column50" not in html


@pytest.mark.django_db(transaction=True)
def test_an_operation_stored_with_a_header_over_the_limit_fails_with_a_message(start_upload, settings):
    """An upload accepted before the limit was set (or lowered) is refused by the worker too."""
    from operations import worker

    op_id = start_upload(csv_bytes(3))
    settings.LONG_TASK_CSV_MAX_COLUMNS = 3
    worker.work_operation(op_id)
    op = Operation.objects.get(pk=op_id)
    assert (op.state, op.error) == (S.FAILED, "The header has 4 columns; at most 3 are allowed")


# --- file parts only where a file is taken ---------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url",
    ["/register/", "/pause/", "/terminate/", "/get_status/", "/api/operations/", "/api/operations/{op_id}/pause/"],
)
def test_endpoints_without_a_file_refuse_file_parts_before_storing_them(api, register, media_root, url):
    """60 MB sent to /register/ as a file part were streamed to disk and answered 201."""
    op_id = register()
    before = Operation.objects.count()
    response = api.post(url.format(op_id=op_id), {"op_id": op_id, "file": upload_file(b"x" * 100_000)})
    assert response.status_code == 400
    assert response.json()["message"].startswith("This endpoint takes no file: send a file to /upload/")
    assert Operation.objects.count() == before
    assert list((media_root / "incoming").iterdir()) == []
    assert Operation.objects.get(pk=op_id).state == S.REGISTERED


@pytest.mark.django_db
def test_endpoints_that_take_a_file_still_do(api, register):
    response = api.post(f"/api/operations/{register()}/start/", {"file": upload_file(csv_bytes(2))})
    assert response.status_code == 202, response.content
    op_id = register()
    assert api.post("/upload/", {"op_id": op_id, "file": upload_file(csv_bytes(2))}).status_code == 202
    assert api.post("/pause/", {"op_id": op_id}).status_code == 200
    assert api.post("/resume/", {"op_id": op_id, "file": upload_file(csv_bytes(2))}).status_code == 202


# --- NUL bytes: refused where they are used only ---------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "header",
    [
        {"HTTP_COOKIE": "theme=dark%00; other=a\x00b"},
        {"HTTP_REFERER": "https://example.com/?q=%00"},
        {"HTTP_USER_AGENT": "probe\x00/1.0"},
        {"HTTP_ACCEPT_LANGUAGE": "en%00"},
    ],
)
def test_a_nul_byte_in_an_unrelated_header_is_let_through(api, header):
    response = api.post("/register/", {}, format="json", **header)
    assert response.status_code == 201, response.content


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "header"),
    [
        ("/register/?x=%00", {}),
        ("/register/", {"HTTP_COOKIE": "sessionid=abc\x00def"}),
        ("/register/", {"HTTP_AUTHORIZATION": "Token abc\x00def"}),
        ("/api/operations/%00/", {}),
    ],
)
def test_a_nul_byte_where_it_is_used_is_refused(api, path, header):
    response = APIClient().post(path, {}, format="json", **header)
    assert response.status_code == 400
    assert response.json() == {"message": "The request contains a NUL byte"}
