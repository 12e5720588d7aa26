"""File parts are read only by the endpoints that take files, from authenticated callers, and
no further than the endpoint's own limit (SPEC §8). Everything else refuses a multipart body's
file before a byte of it reaches the disk or the bucket.

What reaches the disk or the bucket is looked at *while* the body is read (each read of the
test client's payload): a refused file that was spooled and then deleted at the end of the
request would otherwise go unseen."""

import pytest
from django.core.files.uploadhandler import FileUploadHandler
from django.test import Client
from django.test.client import FakePayload
from django.urls import reverse

from operations.admin.console import PREVIEW_MAX_BYTES
from operations.models import Operation
from operations.uploads import CheckedUploadHandler
from tests.support import csv_bytes, token_client, upload_file

MiB = 1024 * 1024
PREVIEW = reverse("admin:operations_operation_import_preview")
NO_FILE_HERE = (
    "This endpoint takes no file: send a file to /upload/ or /api/operations/{id}/start/ "
    "(multipart/form-data, field 'file')"
)


class BodyWatch:
    """Counts the bytes the server reads of request bodies, and after each read records the
    most that `stored()` (bytes on disk, or objects and multipart uploads in the bucket) has
    been."""

    def __init__(self, monkeypatch, stored):
        self.read = 0
        self.most_stored = 0
        original = FakePayload.read

        def read(payload, size=-1, /):
            data = original(payload, size)
            self.read += len(data)
            self.most_stored = max(self.most_stored, stored())
            return data

        monkeypatch.setattr(FakePayload, "read", read)


def bytes_on_disk(media_root) -> int:
    """Everything under the media root, FILE_UPLOAD_TEMP_DIR (media/incoming) included."""
    return sum(path.stat().st_size for path in media_root.rglob("*") if path.is_file())


@pytest.fixture
def on_disk(monkeypatch, media_root) -> BodyWatch:
    return BodyWatch(monkeypatch, lambda: bytes_on_disk(media_root))


@pytest.fixture
def in_bucket(monkeypatch, s3) -> BodyWatch:
    return BodyWatch(monkeypatch, lambda: len(s3.all_keys()) + len(s3.multipart_uploads()))


def csrf_client(url: str = "/admin/login/") -> tuple[Client, str]:
    """A browser that enforces CSRF, with the cookie and the token of a form: Django's CSRF
    check then reads the body's form fields (request.POST) before the view runs."""
    client = Client(enforce_csrf_checks=True)
    token = str(client.get(url).context["csrf_token"])
    return client, token


def post_to_a_view_without_files(name: str, user, file: bytes):
    """POST a multipart body with a file to a view that takes none; the response."""
    if name in ("admin login", "API login"):
        url = "/admin/login/" if name == "admin login" else "/api/auth/login/"
        client, token = csrf_client(url)
        body = {"csrfmiddlewaretoken": token, "username": "alice", "password": "wrong", "file": upload_file(file)}
        return client.post(url, body)
    if name == "preview, anonymous":
        client, token = csrf_client()
        return client.post(PREVIEW, {"csrfmiddlewaretoken": token, "file": upload_file(file), "complete": "1"})
    url = {"register": "/register/", "pause": "/pause/", "API create": "/api/operations/"}[name]
    return token_client(user).post(url, {"op_id": 1, "file": upload_file(file)})


VIEWS_WITHOUT_FILES = ["admin login", "API login", "preview, anonymous", "register", "pause", "API create"]


@pytest.mark.django_db
@pytest.mark.parametrize("view", VIEWS_WITHOUT_FILES)
def test_a_file_sent_to_a_view_that_takes_none_never_reaches_the_disk(view, user, on_disk, media_root):
    response = post_to_a_view_without_files(view, user, csv_bytes(60_000))  # about 3 MB
    assert response.status_code < 500
    if view in ("register", "pause", "API create"):
        assert (response.status_code, response.json()) == (400, {"message": NO_FILE_HERE})
    if view != "preview, anonymous":  # not read at all: the login page is the answer
        assert on_disk.read > 0  # the body was read (the form's fields)...
    assert on_disk.most_stored == 0  # ...but nothing of the file was written, not even for a while
    assert bytes_on_disk(media_root) == 0 and not Operation.objects.exists()


@pytest.mark.s3
@pytest.mark.django_db
@pytest.mark.parametrize("view", VIEWS_WITHOUT_FILES)
def test_a_file_sent_to_a_view_that_takes_none_never_reaches_the_bucket(view, user, in_bucket, s3):
    response = post_to_a_view_without_files(view, user, csv_bytes(60_000))
    assert response.status_code < 500
    assert in_bucket.most_stored == 0
    assert s3.all_keys() == [] and s3.multipart_uploads() == []


@pytest.mark.django_db
def test_the_file_of_a_caller_who_is_not_logged_in_is_not_read(register, on_disk, media_root):
    op_id = register()
    on_disk.read = 0
    response = Client().post("/upload/", {"op_id": op_id, "file": upload_file(csv_bytes(20_000))})
    assert response.status_code == 401
    response = Client().post(f"/api/operations/{op_id}/start/", {"file": upload_file(csv_bytes(20_000))})
    assert response.status_code == 401
    assert (on_disk.read, on_disk.most_stored, bytes_on_disk(media_root)) == (0, 0, 0)
    assert Operation.objects.get(pk=op_id).state == Operation.State.REGISTERED


@pytest.mark.django_db
def test_the_preview_stops_reading_at_its_limit(admin_client, on_disk, media_root):
    """A file past the preview's 64 KiB is refused where it goes past: the rest of the body is
    neither read nor kept (a browser's preview sends 64 KiB at most)."""
    content = csv_bytes(20_000)  # about 1 MB: within the room left for the form's other fields
    assert len(content) > 8 * PREVIEW_MAX_BYTES
    response = admin_client.post(PREVIEW, {"file": upload_file(content), "complete": "1"})
    assert (response.status_code, response.json()) == (
        413,
        {"message": f"Send up to {PREVIEW_MAX_BYTES} bytes in 'file'"},
    )
    # The parser reads a chunk at a time, and may hold the next one.
    assert on_disk.read <= PREVIEW_MAX_BYTES + 2 * CheckedUploadHandler.chunk_size < len(content)
    assert on_disk.most_stored == 0 and bytes_on_disk(media_root) == 0


@pytest.mark.django_db
def test_a_preview_whose_body_says_it_is_too_large_is_not_read_at_all(admin_client, on_disk):
    response = admin_client.post(PREVIEW, {"file": upload_file(csv_bytes(100_000)), "complete": "1"})
    assert response.status_code == 413
    assert on_disk.read == 0


@pytest.mark.s3
@pytest.mark.django_db
def test_the_preview_never_writes_to_the_bucket(admin_client, in_bucket, s3):
    response = admin_client.post(PREVIEW, {"file": upload_file(b"a,b\n1,2\n"), "complete": "1"})
    assert response.status_code == 200 and response.json()["columns"] == ["a", "b"]
    assert in_bucket.most_stored == 0 and s3.all_keys() == []


@pytest.mark.django_db
def test_an_upload_over_the_limit_stops_being_read_where_it_goes_over(api, register, settings, on_disk, media_root):
    settings.LONG_TASK_MAX_UPLOAD_BYTES = 100_000
    op_id = register()
    content = csv_bytes(20_000)  # about 1 MB: within the room left for the form's other fields
    response = api.post("/upload/", {"op_id": op_id, "file": upload_file(content)})
    assert response.status_code == 413
    assert on_disk.read <= 100_000 + 2 * CheckedUploadHandler.chunk_size < len(content)
    assert bytes_on_disk(media_root) == 0


@pytest.mark.django_db
def test_a_logged_in_browser_still_uploads_through_the_api_with_its_csrf_token(user, media_root):
    """Session authentication checks the CSRF token, which reads the form before the view: the
    endpoint has said by then that it takes a file, and the caller is known."""
    client, token = csrf_client()
    client.force_login(user)
    op_id = client.post("/register/", {}, headers={"X-CSRFToken": token}).json()["op_id"]
    response = client.post(
        "/upload/", {"op_id": op_id, "file": upload_file(b"a,b\n1,2\n")}, headers={"X-CSRFToken": token}
    )
    assert response.status_code == 202, response.content
    assert Operation.objects.get(pk=op_id).file_size == 8


def test_the_upload_handler_is_the_only_one():
    """Another handler (Django's defaults spool to memory and disk) would read files for every
    view again."""
    from django.conf import settings

    assert settings.FILE_UPLOAD_HANDLERS == ["operations.uploads.CheckedUploadHandler"]
    assert issubclass(CheckedUploadHandler, FileUploadHandler)
