"""Upload and Export with their files in S3 (the suite's moto server), the worker loop
in-process: an upload streams into its object in parts and a refused or cut-off one leaves
nothing; an import resumed on S3 reads from its checkpoint's byte offset and nothing before it
(I8); terminate deletes the objects (I3); a store that goes away fails the operation with a
message, and the operation resumes once it is back. Real worker processes on S3 are in
test_no_shared_disk.py."""

import csv
import io
import re
import uuid
from pathlib import Path

import pytest
from django.core.handlers.wsgi import WSGIHandler
from rest_framework.authtoken.models import Token

from operations import storage, worker
from operations.models import Operation, RowError, UploadedRow
from operations.storage import deadline
from tests.api.test_export_type import download, export, imported_records
from tests.api.test_upload_type import assert_imported, errors_of, request, resume, rich_csv, rows_of, run
from tests.support import csv_bytes, upload_file
from tests.unit.test_storage import body_size

S = Operation.State
MiB = 1024 * 1024
pytestmark = [pytest.mark.s3, pytest.mark.django_db(transaction=True)]


class Calls:
    """The S3 calls of one kind this process makes through the default storage."""

    def __init__(self, event: str):
        self.event = event
        self.params: list[dict] = []
        self.sizes: list[int] = []
        self.clients = [storage.backend().objects.client]  # a worker's
        with deadline.web_request():
            self.clients.append(storage.backend().objects.client)  # a web request's
        for client in self.clients:
            client.meta.events.register(event, self._record)

    def _record(self, params, **_):
        self.params.append(params)
        if "Body" in params:
            self.sizes.append(body_size(params["Body"]))

    def close(self):
        for client in self.clients:
            client.meta.events.unregister(self.event, self._record)


@pytest.fixture
def calls(s3):
    opened = []

    def watch(event: str) -> Calls:
        opened.append(Calls(event))
        return opened[-1]

    yield watch
    for watcher in opened:
        watcher.close()


def files_on_disk(media_root: Path) -> list[Path]:
    return [path for path in media_root.rglob("*") if path.is_file()] if media_root.exists() else []


# --- the web: uploads stream into the object ------------------------------------------------------


def test_an_upload_streams_into_its_object_in_parts(api, register, s3, calls, settings, media_root):
    """I7 on S3: the web sends the file as it arrives, in parts of LONG_TASK_S3_PART_BYTES
    (memory: one part), and nothing of it touches the web's disk."""
    settings.LONG_TASK_S3_PART_BYTES = 5 * MiB
    content = csv_bytes(200_000)  # 10.3 MiB: two parts of 5 MiB and the rest
    parts = calls("before-parameter-build.s3.UploadPart")
    op_id = register()
    response = api.post("/upload/", {"op_id": op_id, "file": upload_file(content, "people.csv")})
    assert response.status_code == 202, response.content

    op = Operation.objects.get(pk=op_id)
    assert s3.read(op.file.name) == content
    assert (op.file_name, op.file_size, op.columns) == ("people.csv", len(content), ["name", "phone", "email", "city"])
    sizes = parts.sizes
    assert len(sizes) == 3 and sum(sizes) == len(content) and sizes[:2] == [5 * MiB, 5 * MiB]
    assert s3.all_keys() == [f"files/{op.file.name}"] and s3.multipart_uploads() == []
    assert re.fullmatch(r"uploads/[0-9a-f]{32}\.csv", op.file.name)  # named by the upload handler
    assert files_on_disk(media_root) == []


@pytest.mark.parametrize(
    "content, status",
    [
        (b"", 400),
        (b"name,city\nann,\x00Paris\n", 400),
        (b"name,city\nann,\xff\n", 400),
        (b"name,name\nann,bob\n", 400),
        (csv_bytes(2_000), 413),
    ],
    ids=["empty", "NUL byte", "not UTF-8", "bad header", "too large"],
)
def test_a_refused_upload_leaves_nothing_in_the_store(api, register, s3, settings, content, status):
    settings.LONG_TASK_MAX_UPLOAD_BYTES = 50_000
    op_id = register()
    response = api.post("/upload/", {"op_id": op_id, "file": upload_file(content)})
    assert response.status_code == status, response.content
    assert s3.all_keys() == [] and s3.multipart_uploads() == []
    assert Operation.objects.get(pk=op_id).state == S.REGISTERED


def test_an_upload_the_state_refuses_leaves_only_the_first_file(api, start_upload, s3):
    op_id = start_upload(csv_bytes(50))
    first = Operation.objects.get(pk=op_id).file.name
    response = api.post("/upload/", {"op_id": op_id, "file": upload_file(csv_bytes(60))})
    assert (response.status_code, response.json()["message"]) == (409, "Upload already running")
    assert s3.all_keys() == [f"files/{first}"] and s3.multipart_uploads() == []


def test_an_upload_cut_off_mid_body_aborts_its_multipart_upload(user, register, api, s3, settings):
    """The client goes away half-way through the body: the parts already sent are dropped."""
    settings.LONG_TASK_S3_PART_BYTES = 5 * MiB
    op_id = register()
    boundary = "cut-" + uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="op_id"\r\n\r\n{op_id}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.csv"\r\n'
        "Content-Type: text/csv\r\n\r\n"
    ).encode()
    content = csv_bytes(250_000)  # 14 MiB; two parts are sent before the cut
    body = head + content + f"\r\n--{boundary}--\r\n".encode()

    class GoneAway(io.RawIOBase):
        position = 0

        def readable(self):
            return True

        def readinto(self, buffer):
            if self.position > 12 * MiB:
                raise OSError("connection reset by peer")
            piece = body[self.position : self.position + len(buffer)]
            buffer[: len(piece)] = piece
            self.position += len(piece)
            return len(piece)

    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/upload/",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BufferedReader(GoneAway()),
        "wsgi.errors": io.StringIO(),
        "CONTENT_TYPE": f"multipart/form-data; boundary={boundary}",
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_AUTHORIZATION": f"Token {Token.objects.get_or_create(user=user)[0].key}",
    }
    statuses = []
    response = WSGIHandler()(environ, lambda status, headers, exc_info=None: statuses.append(status))
    response.close()
    assert statuses and not statuses[0].startswith("2")
    assert s3.multipart_uploads() == [] and s3.all_keys() == []
    assert Operation.objects.get(pk=op_id).state == S.REGISTERED


# --- the worker: reads from the checkpoint, deletes on terminate ----------------------------------


@pytest.mark.parametrize("how", ["resume", "upload"], ids=["/resume/", "/upload/ again"])
def test_a_resume_on_s3_reads_from_the_checkpoint_and_nothing_before_it(api, start_upload, chunks, s3, calls, how):
    """I8 on S3: after a pause, the object's bytes before the checkpoint are replaced by
    garbage (any re-read would fail the import); the resumed import's first GET starts at the
    checkpoint's byte offset, and the result is the uninterrupted one, rejected rows too."""
    f = rich_csv(terminator="\r\n", bom=True)
    content = f.content()
    op_id = start_upload(content)
    chunks.after_chunk = lambda count: count == 4 and request(api, "pause", op_id)
    op = run(op_id)
    assert (op.state, op.lines_finished, op.position) == (S.PAUSED, 4 * chunks.size, f.ends[4 * chunks.size])

    key = f"{s3.prefix}/{op.file.name}"
    s3.client.put_object(Bucket=s3.name, Key=key, Body=b"\xff" * op.position + content[op.position :])
    gets = calls("before-call.s3.GetObject")
    chunks.after_chunk = None
    resume(api, op_id, how, content)
    run(op_id)
    assert_imported(api, op_id, f)
    first = int(gets.params[0]["headers"]["Range"].removeprefix("bytes=").split("-")[0])
    assert first == op.position
    starts = [int(p["headers"]["Range"].removeprefix("bytes=").split("-")[0]) for p in gets.params]
    assert min(starts) >= op.position  # the rejected rows' text too
    assert len(errors_of(op_id)) == len(f.errors) > 0
    assert s3.multipart_uploads() == []


def test_terminate_deletes_the_object(api, start_upload, chunks, s3):
    op_id = start_upload(rich_csv().content())
    chunks.after_chunk = lambda count: count == 3 and request(api, "pause", op_id)
    assert run(op_id).state == S.PAUSED
    assert len(s3.all_keys()) == 1
    chunks.after_chunk = None
    assert request(api, "terminate", op_id)["state"] == S.TERMINATING
    op = run(op_id)
    assert (op.state, op.file.name) == (S.TERMINATED, "")
    assert UploadedRow.objects.filter(operation_id=op_id).count() == 0
    assert RowError.objects.filter(operation_id=op_id).count() == 0
    assert s3.all_keys() == []


def test_a_store_that_goes_away_fails_the_import_and_it_resumes_once_back(
    api, start_upload, chunks, s3, s3_proxy, settings, caplog
):
    """The ranged GET is retried with backoff (LONG_TASK_STORAGE_RETRIES), then the operation
    fails with a message; resumed when the store is back, it completes exactly."""
    f = rich_csv()
    op_id = start_upload(f.content())
    chunks.size = 1

    def away(count: int) -> None:
        if count == 5:
            s3_proxy.refuse = True
            s3_proxy.cut_all()

    chunks.after_chunk = away
    settings.LONG_TASK_S3_READ_BYTES = 16  # small reads: the store is asked again after the fifth chunk
    op = run(op_id)
    assert op.state == S.FAILED
    # The operation's error names no endpoint, bucket or key: the log has them.
    assert op.error == "The file store is not answering; try again"
    assert re.search(r"reading uploads/\S+ at byte \d+ failed 3 times: .*http://127\.0\.0\.1", caplog.text)
    done = op.lines_finished
    assert done >= 5 and rows_of(op_id) == [row for row in f.rows if row[0] <= done]

    s3_proxy.refuse = False
    chunks.after_chunk = None
    assert api.post("/resume/", {"op_id": op_id}, format="json").status_code == 202
    run(op_id)
    assert_imported(api, op_id, f)


# --- Export: parts, the join and the download through the store ---------------------------------


def test_an_export_on_s3_round_trips_and_terminate_deletes_its_objects(api, register, start_upload, chunks, s3):
    source = rich_csv(terminator="\r\n", bom=True)
    source_id = start_upload(source.content())
    run(source_id)
    chunks.size = 7

    op_id = export(api, source_id)
    worker.work_operation(op_id)
    op = Operation.objects.get(pk=op_id)
    assert op.state == S.COMPLETED, op.error
    data = download(api, op_id)
    assert s3.read(op.file.name) == data
    # Under the name the Export chose for it, as text/csv.
    assert re.fullmatch(rf"exports/{op_id}-[0-9a-f]{{32}}\.csv", op.file.name)
    head = s3.client.head_object(Bucket=s3.name, Key=f"{s3.prefix}/{op.file.name}")
    assert head["ContentType"] == "text/csv"
    assert data.startswith(b"name,note,city,n\n")
    assert list(csv.reader(io.StringIO(data.decode(), newline="")))[1:] == imported_records(source_id, source.header)
    # The parts are gone: the source's file and the result are left.
    assert sorted(s3.all_keys()) == sorted(
        [f"files/{op.file.name}", f"files/{Operation.objects.get(pk=source_id).file.name}"]
    )

    # A second export, paused half-way, then terminated: its parts go too.
    second = export(api, source_id)
    chunks.count = 0
    chunks.after_chunk = lambda count: count == 3 and request(api, "pause", second)
    assert run(second).state == S.PAUSED
    assert any(name.startswith(f"files/exports/{second}/") for name in s3.all_keys())
    chunks.after_chunk = None
    assert request(api, "terminate", second)["state"] == S.TERMINATING
    assert run(second).state == S.TERMINATED
    assert not any(name.startswith(f"files/exports/{second}") for name in s3.all_keys())


def test_the_download_of_an_upload_streams_from_the_store(api, start_upload, s3, settings):
    settings.LONG_TASK_S3_READ_BYTES = 64 * 1024
    content = csv_bytes(20_000)
    op_id = start_upload(content)
    response = api.get(f"/api/operations/{op_id}/download/")
    assert response.status_code == 200
    assert int(response["Content-Length"]) == len(content)
    assert b"".join(response.streaming_content) == content
