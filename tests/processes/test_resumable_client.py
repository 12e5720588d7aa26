"""A tus client that no one here wrote (`tuspy`, from PyPI) against the live server and a real
worker, on local disk and on S3 (the suite's moto server): it sends a few pieces, is dropped,
a new uploader finds the upload by its stored URL and goes on from the server's offset, and
`upload=` starts the import, which completes."""

import hashlib

import pytest
import requests
from rest_framework.authtoken.models import Token
from tusclient import client as tus_client
from tusclient.storage.filestorage import FileStorage

from operations.models import Operation
from tests.support import csv_bytes, running_server, stored_lines, wait_for

S = Operation.State
PIECE_BYTES = 256 * 1024
ROWS = 40_000


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def store_env(request) -> dict:
    if request.param == "local":
        return {}
    return request.getfixturevalue("s3").env()


@pytest.mark.processes
@pytest.mark.django_db(transaction=True)
def test_tuspy_uploads_is_dropped_resumes_and_the_import_completes(user, workers, media_root, tmp_path, store_env):
    token = Token.objects.get_or_create(user=user)[0].key
    auth = {"Authorization": f"Token {token}"}
    path = tmp_path / "data.csv"
    path.write_bytes(csv_bytes(ROWS))
    size = path.stat().st_size
    workers.start(**store_env)
    with running_server(media_root=media_root, log_path=tmp_path / "web.log", **store_env) as (_, port):
        base = f"http://127.0.0.1:{port}"
        client = tus_client.TusClient(f"{base}/api/uploads/", headers=auth)
        urls = FileStorage(str(tmp_path / "tus-urls.json"))

        def uploader():
            return client.uploader(
                str(path),
                chunk_size=PIECE_BYTES,
                metadata={"filename": "data.csv"},
                store_url=True,
                url_storage=urls,
                upload_checksum=True,
            )

        first = uploader()
        first.upload(stop_at=3 * PIECE_BYTES)  # three pieces, then the client is gone
        url = first.url
        del first

        again = uploader()  # finds the upload by the file's fingerprint, asks the server where it stands
        assert (again.url, again.offset) == (url, 3 * PIECE_BYTES)
        again.upload()
        head = requests.head(url, headers={**auth, "Tus-Resumable": "1.0.0"}, timeout=30)
        assert (head.headers["Upload-Offset"], head.headers["Upload-Length"]) == (str(size), str(size))

        op_id = requests.post(f"{base}/register/", headers=auth, timeout=30).json()["op_id"]
        started = requests.post(f"{base}/upload/", data={"op_id": op_id, "upload": url}, headers=auth, timeout=60)
        assert started.status_code == 202, started.text
        wait_for(
            lambda: Operation.objects.get(pk=op_id).state in (S.COMPLETED, S.FAILED),
            timeout=120,
            what="the import to finish",
        )
    op = Operation.objects.get(pk=op_id)
    assert (op.state, op.error, op.lines_finished) == (S.COMPLETED, "", ROWS)
    assert op.file_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert stored_lines(op_id) == list(range(1, ROWS + 1))
