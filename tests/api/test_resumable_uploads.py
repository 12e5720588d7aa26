"""Resumable uploads (tus 1.0) at /api/uploads/, on local disk and on S3 (the suite's moto
server): the protocol's cases, the checks of a one-request upload across pieces, cuts, the
SHA-256, expiry and caps. Operations started from uploads: test_resumable_starts.py."""

import hashlib
import io
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from operations import retention
from operations.models import Operation, ResumableUpload
from operations.tus import protocol as tus_protocol
from operations.tus import running_hash
from operations.tus import services as tus
from tests.api import tus_client as tc
from tests.api.test_upload_type import rich_csv
from tests.api.tus_client import MiB, big_csv, upload_of
from tests.support import csv_bytes, token_client

S = Operation.State
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(params=tc.STORES)
def store(request, settings):
    return tc.store_for(request, settings)


# --- the protocol -----------------------------------------------------------------------------


def test_options_announces_the_version_extensions_and_limits(api):
    response = api.options("/api/uploads/")
    assert response.status_code == 204
    assert response["Tus-Resumable"] == response["Tus-Version"] == "1.0.0"
    assert set(response["Tus-Extension"].split(",")) == {"creation", "termination", "checksum", "expiration"}
    assert response["Tus-Max-Size"] == str(settings.LONG_TASK_MAX_UPLOAD_BYTES)
    assert "sha1" in response["Tus-Checksum-Algorithm"].split(",")


def test_create_answers_201_with_a_location_and_head_gives_the_offset(api, store):
    response = tc.create(api, 1000, name="people.csv")
    assert response.status_code == 201, response.content
    assert response["Tus-Resumable"] == "1.0.0"
    assert response["Location"] == f"/api/uploads/{response.json()['id']}/"
    assert response.json()["url"] == f"http://testserver{response['Location']}"
    assert response["Upload-Expires"].endswith("GMT")
    url = response["Location"]
    head = tc.head(api, url)
    assert head.status_code == 200
    assert (head["Upload-Offset"], head["Upload-Length"], head["Cache-Control"]) == ("0", "1000", "no-store")
    assert head["Upload-Metadata"] == tc.metadata(filename="people.csv")
    assert head["Tus-Resumable"] == "1.0.0"
    assert upload_of(url).file_name == "people.csv"


def test_a_request_without_the_protocol_version_is_refused_with_412(api):
    response = api.generic("POST", "/api/uploads/", headers={"Upload-Length": "10"})
    assert response.status_code == 412
    assert response["Tus-Version"] == "1.0.0"
    assert ResumableUpload.objects.count() == 0


def test_create_needs_a_length_within_the_limit(api, settings):
    assert api.generic("POST", "/api/uploads/", headers=tc.TUS).status_code == 400
    assert tc.create(api, 10, headers={"Upload-Length": "-1"}).status_code == 400
    settings.LONG_TASK_MAX_UPLOAD_BYTES = 100
    response = tc.create(api, 101)
    assert response.status_code == 413
    assert "upload limit of 100 bytes" in response.json()["message"]
    assert tc.create(api, 10, headers={"Upload-Metadata": "filename %%%"}).status_code == 400


def test_an_anonymous_request_is_refused(client):
    response = client.generic("POST", "/api/uploads/", headers={**tc.TUS, "Upload-Length": "10"})
    assert response.status_code == 401


def test_pieces_append_at_the_offset_and_the_file_is_the_source_byte_for_byte(api, store):
    content = rich_csv().content() * 40
    url = tc.created(api, len(content))
    tc.send(api, url, content, piece_bytes=7777)
    upload = upload_of(url)
    assert upload.finished and upload.offset == len(content)
    assert upload.sha256 == hashlib.sha256(content).hexdigest()
    assert store.read(upload.stored_name) == content


def test_a_wrong_offset_is_a_409_and_appends_nothing(api, store):
    url = tc.created(api, 100)
    assert tc.patch(api, url, 0, b"a,b\n").status_code == 204
    for wrong in (0, 2, 10):
        response = tc.patch(api, url, wrong, b"x,y\n")
        assert response.status_code == 409, response.content
        assert "has 4 bytes" in response.json()["message"]
    assert tc.offset(api, url) == 4


def test_a_piece_needs_the_piece_content_type(api):
    url = tc.created(api, 100)
    response = tc.patch(api, url, 0, b"a,b\n", **{"Content-Type": "application/json"})
    assert response.status_code == 415
    assert tc.offset(api, url) == 0


def test_a_piece_past_the_length_is_a_413_and_appends_nothing(api, store):
    url = tc.created(api, 10)
    assert tc.patch(api, url, 0, b"a,b\n").status_code == 204
    response = tc.patch(api, url, 4, b"1234567")
    assert response.status_code == 413
    assert tc.offset(api, url) == 4
    assert tc.patch(api, url, 4, b"1,2\n3\n").status_code == 204
    assert store.read(upload_of(url).stored_name) == b"a,b\n1,2\n3\n"


def test_a_piece_that_does_not_match_its_checksum_is_a_460_and_appends_nothing(api, store):
    url = tc.created(api, 8)
    response = tc.patch(api, url, 0, b"a,b\n", checksum=tc.sha1_of(b"a,c\n"))
    assert response.status_code == 460
    assert response.reason_phrase == "Checksum Mismatch"
    assert tc.offset(api, url) == 0
    assert tc.patch(api, url, 0, b"a,b\n", checksum="crc32 AAAA").status_code == 400
    assert tc.patch(api, url, 0, b"a,b\n", checksum="sha1 not*base64").status_code == 400
    assert tc.offset(api, url) == 0
    sha256 = "sha256 " + __import__("base64").b64encode(hashlib.sha256(b"a,b\n").digest()).decode()
    assert tc.patch(api, url, 0, b"a,b\n", checksum=sha256).status_code == 204
    assert tc.patch(api, url, 4, b"1,2\n", checksum=tc.sha1_of(b"1,2\n")).status_code == 204
    assert store.read(upload_of(url).stored_name) == b"a,b\n1,2\n"


def test_another_users_upload_answers_404(api, other_user, store):
    url = tc.created(api, 8)
    bob = token_client(other_user)
    assert tc.head(bob, url).status_code == 404
    assert tc.patch(bob, url, 0, b"a,b\n").status_code == 404
    assert bob.generic("DELETE", url, headers=tc.TUS).status_code == 404
    assert tc.offset(api, url) == 0


def test_delete_answers_204_and_the_bytes_are_gone(api, store):
    content = big_csv()
    url = tc.created(api, len(content) + 100)
    tc.send(api, url, content, piece_bytes=3 * MiB)
    assert store.leftovers()
    response = api.generic("DELETE", url, headers=tc.TUS)
    assert response.status_code == 204
    assert response["Tus-Resumable"] == "1.0.0"
    assert tc.head(api, url).status_code == 404
    assert store.leftovers() == []


def test_a_method_override_lets_a_post_patch(api):
    url = tc.created(api, 4)
    headers = {**tc.TUS, "Upload-Offset": "0", "X-HTTP-Method-Override": "PATCH"}
    response = api.generic("POST", url, data=b"a,b\n", content_type=tc.PIECE, headers=headers)
    assert response.status_code == 204
    assert upload_of(url).finished


# --- the checks of a one-request upload, across pieces ------------------------------------------


def test_a_utf8_character_split_between_pieces_is_text(api, store):
    content = "name\nünïcödé 😀\n".encode()
    split = content.index("😀".encode()) + 2
    url = tc.created(api, len(content))
    assert tc.patch(api, url, 0, content[:split]).status_code == 204
    assert tc.patch(api, url, split, content[split:]).status_code == 204
    assert store.read(upload_of(url).stored_name) == content


@pytest.mark.parametrize(
    ("pieces", "message"),
    [
        ([b"a,b\n", b"1,\x002\n"], "NUL bytes"),
        ([b"a,b\n", b"1,\xff\n"], "not UTF-8"),
        ([b"a,b\n", b"1,\xc3"], "not UTF-8"),  # a character cut by the end of the file
    ],
)
def test_a_piece_that_is_not_text_is_refused_and_appends_nothing(api, store, pieces, message):
    url = tc.created(api, sum(map(len, pieces)))
    assert tc.patch(api, url, 0, pieces[0]).status_code == 204
    response = tc.patch(api, url, len(pieces[0]), pieces[1])
    assert response.status_code == 400
    assert message in response.json()["message"]
    assert tc.offset(api, url) == len(pieces[0])
    assert not upload_of(url).finished


class CutBody(io.RawIOBase):
    """A request body that breaks (the client went away) after `after` bytes."""

    def __init__(self, data: bytes, after: int):
        self.stream, self.left = io.BytesIO(data[:after]), after

    def read(self, n: int = -1) -> bytes:
        data = self.stream.read(n)
        if not data:
            raise OSError("connection reset by peer")
        return data


@pytest.mark.parametrize("cuts", [[1], [1, 2], [0, 1, 1]])
def test_an_upload_cut_after_pieces_and_mid_piece_resumes_to_the_same_file(api, user, store, cuts):
    content = big_csv()  # S3: parts, tails, and pieces across both
    url = tc.created(api, len(content))
    piece = len(content) // 8 + 1
    for pieces in cuts:
        at = tc.send(api, url, content, piece_bytes=piece, start=tc.offset(api, url), pieces=pieces)
        # then a piece breaks half-way (the client went away): what came is kept
        broken = CutBody(content[at : at + piece], piece // 2)
        tus.upload_append(
            upload_id=upload_of(url).pk, user=user, offset=at, body=broken, content_length=piece, checksum=None
        )
        assert tc.offset(api, url) == at + piece // 2
    at = tc.offset(api, url)
    tc.send(api, url, content, piece_bytes=piece, start=at)
    upload = upload_of(url)
    assert upload.finished
    assert store.read(upload.stored_name) == content
    assert upload.sha256 == hashlib.sha256(content).hexdigest()


@pytest.mark.s3
def test_s3_pieces_of_a_known_size_end_in_parts_of_their_own_and_leave_no_tail(api, settings, s3):
    settings.LONG_TASK_S3_PART_BYTES = 5 * MiB
    store = tc.S3Store(s3)
    content = big_csv()
    url = tc.created(api, len(content))
    at = 0
    for parts in (1, 2):  # 6 MiB: a part of 5 MiB and 1 MiB would leave a tail; one part of 6 MiB
        at = tc.send(api, url, content, piece_bytes=6 * MiB, start=at, pieces=1)
        upload = upload_of(url)
        assert (upload.tail_name, len(upload.parts)) == ("", parts)
    tc.send(api, url, content, piece_bytes=6 * MiB, start=at)  # the last, short part
    upload = upload_of(url)
    assert upload.finished
    assert store.read(upload.stored_name) == content
    assert store.leftovers() == [f"{s3.prefix}/{upload.stored_name}"]


def test_a_cut_piece_with_a_checksum_keeps_nothing(api, user, store):
    url = tc.created(api, 8)
    broken = CutBody(b"a,b\n1,2\n", 5)
    with pytest.raises(tus_protocol.ChecksumMismatch):
        tus.upload_append(
            upload_id=upload_of(url).pk,
            user=user,
            offset=0,
            body=broken,
            content_length=8,
            checksum=tus_protocol.checksum(tc.sha1_of(b"a,b\n1,2\n")),
        )
    assert tc.offset(api, url) == 0


# --- expiry and caps ------------------------------------------------------------------------------


def test_an_expired_upload_is_gone_and_the_sweep_deletes_it_with_its_bytes(api, store, settings):
    finished = tc.upload(api, csv_bytes(10))
    content = big_csv()
    url = tc.created(api, len(content) + 10)
    tc.send(api, url, content, piece_bytes=3 * MiB)
    response = tc.patch(api, url, len(content), b"x")
    assert response["Upload-Expires"]
    ResumableUpload.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert tc.head(api, url).status_code == 410
    assert tc.patch(api, url, len(content) + 1, b"y").status_code == 410
    assert retention.sweep().expired_uploads == 2
    assert tc.head(api, url).status_code == 404
    assert tc.head(api, finished).status_code == 404
    assert store.leftovers() == []


def test_a_piece_moves_the_expiry_on(api, settings):
    settings.LONG_TASK_UPLOAD_EXPIRY = 3600
    url = tc.created(api, 8)
    ResumableUpload.objects.update(expires_at=timezone.now() + timedelta(seconds=5))
    tc.patch(api, url, 0, b"a,b\n")
    assert upload_of(url).expires_at > timezone.now() + timedelta(seconds=3000)
    assert retention.sweep().expired_uploads == 0


def test_unfinished_uploads_are_capped_in_number_and_bytes(api, other_user, settings):
    settings.LONG_TASK_MAX_UNFINISHED_UPLOADS = 2
    settings.LONG_TASK_MAX_UNFINISHED_UPLOAD_BYTES = 1000
    tc.created(api, 400)
    response = tc.create(api, 700)
    assert response.status_code == 413
    assert "unfinished uploads" in response.json()["message"]
    tc.created(api, 500)
    response = tc.create(api, 1)
    assert response.status_code == 429
    assert "2 unfinished uploads" in response.json()["message"]
    assert tc.create(token_client(other_user), 10).status_code == 201


def test_uploads_count_against_the_stored_bytes_quota(api, settings):
    settings.LONG_TASK_QUOTA_STORED_BYTES = 1000
    tc.created(api, 900)
    response = tc.create(api, 200)
    assert response.status_code == 413
    assert "quota" in response.json()["message"]


def test_get_tells_where_an_upload_stands_as_json(api):
    url = tc.created(api, 8, name="a.csv")
    tc.patch(api, url, 0, b"a,b\n")
    body = api.get(url).json()
    assert (body["file_name"], body["offset"], body["length"], body["finished"]) == ("a.csv", 4, 8, False)


def test_a_piece_while_another_request_holds_the_upload_is_a_423_until_its_hold_runs_out(api):
    url = tc.created(api, 8)
    held = ResumableUpload.objects.filter(pk=upload_of(url).pk)
    held.update(busy_token="another-request", busy_until=timezone.now() + timedelta(seconds=30))
    response = tc.patch(api, url, 0, b"a,b\n")
    assert response.status_code == 423
    assert tc.offset(api, url) == 0
    held.update(busy_until=timezone.now() - timedelta(seconds=1))  # its process died
    assert tc.patch(api, url, 0, b"a,b\n").status_code == 204
    assert upload_of(url).busy_token == ""


@pytest.mark.parametrize("same_process", [True, False])
def test_the_sha256_is_the_files_whether_pieces_come_to_one_process_or_not(api, store, monkeypatch, same_process):
    content = big_csv()
    url = tc.created(api, len(content))
    at = tc.send(api, url, content, piece_bytes=3 * MiB, pieces=2)
    if same_process:  # the hash ran along: the file is not read back
        monkeypatch.setattr(tus.storage, "open_for_reading", None)
    else:  # the next pieces came to another process
        running_hash.forget(upload_of(url).pk)
    tc.send(api, url, content, piece_bytes=3 * MiB, start=at)
    assert upload_of(url).sha256 == hashlib.sha256(content).hexdigest()


def test_pieces_lost_by_a_stopped_machine_make_the_upload_gone_not_filled_with_zeros(api):
    url = tc.created(api, 12)
    tc.patch(api, url, 0, b"a,b\n1,2\n")
    path = Path(settings.MEDIA_ROOT) / upload_of(url).stored_name
    path.write_bytes(b"a,b\n")  # what reached the disk before the machine stopped
    response = tc.patch(api, url, 8, b"3,4\n")
    assert response.status_code == 410
    assert "lost" in response.json()["message"]
    assert tc.head(api, url).status_code == 404
    assert not path.exists()
