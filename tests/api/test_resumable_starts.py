"""Operations started from resumable uploads (`upload=` on /upload/, .../start/, a resume, and a
registration that waits for its file), on local disk and on S3 (the suite's moto server)."""

import hashlib

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from operations import storage as tus_storage
from operations.models import Operation, ResumableUpload
from operations.tus import services as tus
from tests.api import tus_client as tc
from tests.api.test_upload_type import rich_csv, rows_of, run
from tests.api.tus_client import upload_of
from tests.support import csv_bytes, token_client, upload_file

S = Operation.State
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(params=tc.STORES)
def store(request, settings):
    return tc.store_for(request, settings)


@pytest.mark.parametrize("endpoint", ["/upload/", "start"])
@pytest.mark.parametrize("reference", ["url", "id"])
def test_an_operation_started_from_an_upload_imports_what_one_request_imports(
    api, register, start_upload, store, endpoint, reference
):
    f = rich_csv()
    url = tc.upload(api, f.content(), piece_bytes=100)
    upload = upload_of(url)
    op_id = register()
    value = f"http://testserver{url}" if reference == "url" else upload.pk.hex
    if endpoint == "start":
        response = api.post(f"/api/operations/{op_id}/start/", {"upload": value}, format="json")
    else:
        response = api.post("/upload/", {"op_id": op_id, "upload": value})
    assert response.status_code == 202, response.content
    assert not ResumableUpload.objects.exists()
    op = run(op_id)
    assert (op.state, op.file_name, op.file_size) == (S.COMPLETED, "data.csv", len(f.content()))
    assert op.file_sha256 == hashlib.sha256(f.content()).hexdigest()
    assert store.read(op.file.name) == f.content()
    assert rows_of(op_id) == f.rows
    one_request = start_upload(f.content())
    run(one_request)
    assert rows_of(op_id) == [(line, data) for line, data in rows_of(one_request)]


def test_an_unfinished_foreign_or_unknown_upload_cannot_start_an_operation(api, register, other_user):
    op_id = register()
    unfinished = tc.created(api, 100)
    response = api.post("/upload/", {"op_id": op_id, "upload": unfinished})
    assert response.status_code == 409
    assert "0 of 100 bytes" in response.json()["message"]
    foreign = tc.upload(token_client(other_user), b"a,b\n1,2\n")
    response = api.post("/upload/", {"op_id": op_id, "upload": foreign})
    assert response.status_code == 404
    assert api.post("/upload/", {"op_id": op_id, "upload": "nonsense"}).status_code == 400
    mine = tc.upload(api, b"a,b\n1,2\n")
    both = api.post("/upload/", {"op_id": op_id, "upload": mine, "file": upload_file(b"a,b\n")})
    assert both.status_code == 400
    assert Operation.objects.get(pk=op_id).state == S.REGISTERED
    assert ResumableUpload.objects.count() == 3


def test_an_empty_upload_is_refused_like_an_empty_file(api, register):
    url = tc.created(api, 0)
    assert tc.patch(api, url, 0, b"").status_code == 204
    response = api.post("/upload/", {"op_id": register(), "upload": url})
    assert response.status_code == 400
    assert "empty" in response.json()["message"]


def test_a_resume_from_an_upload_follows_the_same_file_rule(api, start_upload, chunks):
    f = rich_csv()
    op_id = start_upload(f.content())
    Operation.objects.filter(pk=op_id).update(state=S.PAUSED)
    other = tc.upload(api, f.content() + b"extra,row\n")
    response = api.post("/resume/", {"op_id": op_id, "upload": other})
    assert response.status_code == 409
    assert "differs" in response.json()["message"]
    same = tc.upload(api, f.content())
    response = api.post("/resume/", {"op_id": op_id, "upload": same})
    assert response.status_code == 202, response.content
    assert list(ResumableUpload.objects.values_list("pk", flat=True)) == [upload_of(other).pk]
    assert run(op_id).state == S.COMPLETED


def test_an_operation_registered_with_its_upload_shows_the_bytes_arriving(api, other_user):
    content = csv_bytes(100)
    url = tc.created(api, len(content))
    response = api.post("/register/", {"upload": url}, format="json")
    assert response.status_code == 201, response.content
    op_id = response.json()["op_id"]
    before = api.get(f"/api/operations/{op_id}/")
    assert before.json()["upload"] == {
        "id": str(upload_of(url).pk),
        "bytes_received": 0,
        "bytes_total": len(content),
        "finished": False,
    }
    tc.send(api, url, content, piece_bytes=1000, pieces=1)
    after = api.get(f"/api/operations/{op_id}/", HTTP_IF_NONE_MATCH=before["ETag"])
    assert after.status_code == 200
    assert (after.json()["state"], after.json()["upload"]["bytes_received"]) == ("registered", 1000)
    tc.send(api, url, content, piece_bytes=1000, start=1000)
    assert api.get(f"/api/operations/{op_id}/").json()["upload"]["finished"] is True
    started = api.post(f"/api/operations/{op_id}/start/", {"upload": url}, format="json")
    assert started.status_code == 202, started.content
    assert "upload" not in started.json()
    assert run(op_id).lines_finished == 100
    foreign = tc.created(token_client(other_user), 10)
    assert api.post("/register/", {"upload": foreign}, format="json").status_code == 404


def test_an_upload_whose_finish_failed_is_finished_by_the_start(api, register, store, monkeypatch):
    content = b"a,b\n1,2\n"
    url = tc.created(api, len(content))

    def store_away(*args, **kwargs):
        raise tus_storage.StorageUnavailable()

    with monkeypatch.context() as patched:
        patched.setattr(tus.resumable, "finish", store_away)
        assert tc.patch(api, url, 0, content).status_code == 503
    assert (tc.offset(api, url), upload_of(url).finished) == (len(content), False)
    response = api.post("/upload/", {"op_id": register(), "upload": url})
    assert response.status_code == 202, response.content
    assert run(Operation.objects.get().pk).lines_finished == 1


def registered_waiting(api, count: int) -> None:
    for _ in range(count):
        url = tc.created(api, 100)
        assert api.post("/register/", {"upload": url}, format="json").status_code == 201


@pytest.mark.parametrize("path", ["/api/operations/", "/admin/operations/operation/live/?since=0&ids={ids}"])
def test_a_list_of_operations_waiting_for_their_uploads_costs_no_query_each(api, admin_user, client, path):
    """Each listed status shows its upload's progress: read for the whole page at once."""
    client.force_login(admin_user)
    api.force_authenticate(admin_user)
    caller = client if path.startswith("/admin/") else api

    def queries_of_a_list() -> int:
        ids = ",".join(str(pk) for pk in Operation.objects.values_list("pk", flat=True))
        with CaptureQueriesContext(connection) as captured:
            response = caller.get(path.format(ids=ids))
        assert response.status_code == 200, response.content
        return len(captured)

    registered_waiting(api, 1)
    one = queries_of_a_list()
    registered_waiting(api, 6)
    assert queries_of_a_list() == one
