"""Per-user quotas (SPEC §8): the bytes of the files kept for a user's operations
(LONG_TASK_QUOTA_STORED_BYTES, 413 past it) and the uploads of one user streaming in at once
(LONG_TASK_QUOTA_CONCURRENT_UPLOADS, 429 past it), checked before the body is stored."""

import threading

import pytest
from django.test.client import FakePayload

from operations import quotas
from operations.models import Operation
from tests.support import csv_bytes, token_client, upload_file

S = Operation.State


def stored_files(media_root) -> list:
    return [path for path in media_root.rglob("*") if path.is_file()]


@pytest.mark.django_db
def test_an_upload_past_the_stored_bytes_quota_is_refused_and_stores_nothing(
    api, register, start_upload, other_user, settings, media_root
):
    first = csv_bytes(20)
    settings.LONG_TASK_QUOTA_STORED_BYTES = len(first) + 500
    start_upload(first)
    assert len(stored_files(media_root)) == 1

    op_id = register()
    response = api.post("/upload/", {"op_id": op_id, "file": upload_file(csv_bytes(20))})
    assert response.status_code == 413
    message = response.json()["message"]
    assert message.startswith(f"This file would take your stored files over your quota of {len(first) + 500} bytes")
    assert f"{len(first)} bytes are stored now" in message
    assert len(stored_files(media_root)) == 1  # the first upload only: nothing of the second
    assert Operation.objects.get(pk=op_id).state == S.REGISTERED

    small = b"a,b\n1,2\n"  # what is left of the quota is still there to use
    assert api.post("/upload/", {"op_id": op_id, "file": upload_file(small)}).status_code == 202

    # Another user's quota is another's.
    bob = token_client(other_user)
    bob_op = bob.post("/register/", {}, format="json").json()["op_id"]
    assert bob.post("/upload/", {"op_id": bob_op, "file": upload_file(csv_bytes(20))}).status_code == 202


@pytest.mark.django_db
def test_a_user_whose_quota_is_used_up_is_refused_before_the_body_is_read(
    api, register, start_upload, settings, monkeypatch
):
    first = csv_bytes(20)
    settings.LONG_TASK_QUOTA_STORED_BYTES = len(first)
    start_upload(first)
    op_id = register()
    read = []
    original = FakePayload.read
    monkeypatch.setattr(FakePayload, "read", lambda payload, size=-1: read.append(size) or original(payload, size))
    response = api.post("/upload/", {"op_id": op_id, "file": upload_file(csv_bytes(20))})
    assert response.status_code == 413 and "quota" in response.json()["message"]
    assert "Retry-After" not in response  # waiting frees no stored bytes: the message says what does
    assert read == []


@pytest.mark.django_db
def test_a_terminated_operation_gives_its_bytes_back(api, register, start_upload, settings):
    first = csv_bytes(20)
    settings.LONG_TASK_QUOTA_STORED_BYTES = len(first) + 10
    op_id = start_upload(first)
    Operation.objects.filter(pk=op_id).update(state=S.TERMINATED, file="")  # what a rollback leaves
    assert start_upload(csv_bytes(20))


@pytest.mark.django_db
def test_no_stored_bytes_quota_when_it_is_0(start_upload, settings):
    settings.LONG_TASK_QUOTA_STORED_BYTES = 0
    for _ in range(3):
        start_upload(csv_bytes(20))


@pytest.fixture
def held_bodies(monkeypatch):
    """Request bodies read in threads other than the test's wait at their first read (the
    upload has begun: the handler has taken its slot) until `release` is set; `arrived` counts
    the uploads waiting."""
    main = threading.current_thread()
    arrived = threading.Semaphore(0)
    release = threading.Event()
    original = FakePayload.read

    def read(payload, size=-1, /):
        if threading.current_thread() is not main and not release.is_set():
            arrived.release()
            release.wait(timeout=60)
        return original(payload, size)

    monkeypatch.setattr(FakePayload, "read", read)
    yield arrived, release
    release.set()


@pytest.mark.django_db(transaction=True)
def test_uploads_past_the_concurrent_quota_are_refused_while_the_others_stream(user, settings, held_bodies):
    settings.LONG_TASK_QUOTA_CONCURRENT_UPLOADS = 2
    arrived, release = held_bodies
    api = token_client(user)
    op_ids = [api.post("/register/", {}, format="json").json()["op_id"] for _ in range(4)]
    answers: dict[int, int] = {}

    def upload(op_id: int) -> None:
        from django.db import connections

        try:
            response = token_client(user).post("/upload/", {"op_id": op_id, "file": upload_file(csv_bytes(100))})
            answers[op_id] = response.status_code
        finally:
            connections.close_all()

    threads = [threading.Thread(target=upload, args=(op_id,), daemon=True) for op_id in op_ids[:2]]
    for thread in threads:
        thread.start()
    for _ in threads:
        assert arrived.acquire(timeout=60), "an upload never began"

    # Two of alice's uploads are streaming in: a third is refused before its body is read.
    response = api.post("/upload/", {"op_id": op_ids[2], "file": upload_file(csv_bytes(100))})
    assert response.status_code == 429
    assert response.json() == {
        "message": "You have 2 uploads in progress, the most at once; try again when one has finished"
    }
    assert response["Retry-After"] == str(quotas.UPLOAD_RETRY_SECONDS)  # an upload's end cannot be known
    assert Operation.objects.get(pk=op_ids[2]).state == S.REGISTERED

    release.set()
    for thread in threads:
        thread.join(timeout=60)
    assert answers == {op_ids[0]: 202, op_ids[1]: 202}
    # Finished uploads give their slots back.
    for op_id in op_ids[2:]:
        assert api.post("/upload/", {"op_id": op_id, "file": upload_file(csv_bytes(100))}).status_code == 202


@pytest.mark.django_db
def test_refused_and_finished_uploads_give_their_slot_back(api, register, settings):
    settings.LONG_TASK_QUOTA_CONCURRENT_UPLOADS = 1
    settings.LONG_TASK_MAX_UPLOAD_BYTES = 1000
    op_id = register()
    for content, status in [(csv_bytes(100), 413), (b"", 400), (b"\xff\xfe", 400), (csv_bytes(5), 202)]:
        response = api.post("/upload/", {"op_id": op_id, "file": upload_file(content)})
        assert response.status_code == status, response.content
    op_id = register()
    assert api.post("/upload/", {"op_id": op_id, "file": upload_file(csv_bytes(5))}).status_code == 202
