"""`long-task upload` over tus against a live server, the installed command as a subprocess:
cut by SIGINT after some pieces and continued by the same command, cut mid-piece by a proxy
that drops the connection; the file arrives byte for byte and imports as one request does."""

import hashlib
import os

import pytest
from rest_framework.authtoken.models import Token

from operations.models import Operation, UploadedRow
from testbed.s3 import CuttingProxy
from tests.processes.test_client import long_task
from tests.support import csv_bytes, running_server

S = Operation.State
PIECE = 40_000


@pytest.fixture
def server(user, media_root, tmp_path):
    """A live server, and the client's environment: pointed at it, its state file in tmp_path."""
    token = Token.objects.get_or_create(user=user)[0].key
    with running_server(media_root=media_root, log_path=tmp_path / "web.log") as (_, port):
        yield {
            **os.environ,
            "LONG_TASK_URL": f"http://127.0.0.1:{port}",
            "LONG_TASK_TOKEN": token,
            "LONG_TASK_STATE_DIR": str(tmp_path / "state"),
            "port": str(port),
        }


def rows_of(op_id: int) -> list[tuple[int, dict]]:
    return list(
        UploadedRow.objects.filter(operation_id=op_id).order_by("line_number").values_list("line_number", "data")
    )


def stored_bytes(op: Operation) -> bytes:
    with op.file.open("rb") as handle:
        return handle.read()


def assert_imports_as_one_request(env: dict, op: Operation, path, content: bytes) -> None:
    """The operation's file is `content` byte for byte, and its rows are those a one-request
    upload of the same file stores."""
    assert (op.state, op.file_size, op.file_sha256) == (S.COMPLETED, len(content), hashlib.sha256(content).hexdigest())
    assert stored_bytes(op) == content
    one_request = long_task(
        env, "upload", str(path), "--chunk-size", str(len(content)), "--follow", "--interval", "0.1"
    )
    assert one_request.returncode == 0, one_request.stderr
    reference = Operation.objects.exclude(pk=op.pk).get()
    assert rows_of(op.pk) == rows_of(reference.pk)
    assert len(rows_of(op.pk)) == op.lines_finished


@pytest.mark.processes
@pytest.mark.django_db(transaction=True)
def test_an_upload_cut_after_pieces_is_continued_by_the_same_command(server, workers, tmp_path):
    workers.start()
    content = csv_bytes(6_000)
    path = tmp_path / "people.csv"
    path.write_bytes(content)
    pieces = -(-len(content) // PIECE)
    args = ("upload", str(path), "--chunk-size", str(PIECE), "--follow", "--interval", "0.1")

    first = long_task({**server, "LONG_TASK_STOP_AFTER_PIECES": "1"}, *args)
    assert first.returncode == 130, first.stdout + first.stderr
    assert f"upload interrupted at {PIECE / 1000:.1f} kB" in first.stderr
    assert f"continue: long-task upload {path} --resume --chunk-size {PIECE}" in first.stderr
    op = Operation.objects.get()
    assert op.state == S.REGISTERED, "the operation waits for the rest of its file"
    status = long_task(server, "status", str(op.pk))
    assert f"upload    {PIECE / 1000:.1f} kB of {len(content) / 1000:.1f} kB received" in status.stdout

    second = long_task({**server, "LONG_TASK_STOP_AFTER_PIECES": "2"}, *args, "--resume")
    assert second.returncode == 130, second.stdout + second.stderr
    assert f"continuing the upload at {PIECE / 1000:.1f} kB" in second.stdout
    assert f"upload interrupted at {3 * PIECE / 1000:.1f} kB" in second.stderr

    third = long_task(server, *args)
    assert third.returncode == 0, third.stdout + third.stderr
    assert f"continuing the upload at {3 * PIECE / 1000:.1f} kB" in third.stdout
    assert f"operation {op.pk} completed" in third.stdout
    assert pieces > 4
    assert not (tmp_path / "state" / "uploads.json").read_text().strip("{} \n")

    op.refresh_from_db()
    assert_imports_as_one_request(server, op, path, content)


@pytest.mark.processes
@pytest.mark.django_db(transaction=True)
def test_a_connection_dropped_mid_piece_is_retried_and_the_upload_completes(server, workers, tmp_path):
    workers.start()
    content = csv_bytes(6_000)
    path = tmp_path / "people.csv"
    path.write_bytes(content)
    proxy = CuttingProxy(int(server["port"]))
    try:
        # The connection is reset half-way through the second piece.
        proxy.cut_request_after = PIECE + PIECE // 2
        through_proxy = {**server, "LONG_TASK_URL": proxy.endpoint}
        result = long_task(
            through_proxy, "upload", str(path), "--chunk-size", str(PIECE), "--follow", "--interval", "0.1"
        )
    finally:
        proxy.close()

    assert result.returncode == 0, result.stdout + result.stderr
    assert proxy.cuts == 1
    assert "trying again in 0.5s" in result.stdout
    op = Operation.objects.get()
    assert_imports_as_one_request(server, op, path, content)
