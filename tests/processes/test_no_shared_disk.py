"""SPEC §11: web processes and workers share nothing but the database and the file store.

Three "machines": a web server and two workers, each started in a directory of its own with a
media root of its own, all of them pointed at the suite's S3 server (moto) and the test
database. Everything goes through HTTP, as a client would: an import is paused, resumed, its
worker SIGKILLed mid-chunk, and the other worker takes it over from the checkpoint it reads in
S3; an export of it is written by a worker and downloaded from the web; a second import is
terminated and leaves nothing, its object included. No machine's disk holds a byte of any file.
The workers are held between chunks by a gate (tests/gate.py) where the test acts mid-import.
"""

import http.client
import json
import signal
import uuid
from pathlib import Path

import pytest
from rest_framework.authtoken.models import Token

from operations.models import Operation, RowError, UploadedRow
from tests.support import (
    csv_bytes,
    exact_chunks,
    op_in_state,
    overlapping_chunks,
    running_server,
    stored_lines,
    wait_for,
)

from .test_processes import with_bad_rows

pytestmark = [pytest.mark.s3, pytest.mark.processes, pytest.mark.django_db(transaction=True)]
S = Operation.State
ROWS, BAD_EVERY = 20_000, 500


class Client:
    """The HTTP API of the web machine, with a token."""

    def __init__(self, port: int, token: str):
        self.port, self.token = port, token

    def request(self, method: str, path: str, body: bytes = b"", content_type: str = "application/json"):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        headers = {"Authorization": f"Token {self.token}", "Content-Type": content_type}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        conn.close()
        return response.status, data

    def post(self, path: str, **fields) -> dict:
        status, data = self.request("POST", path, json.dumps(fields).encode())
        assert status < 300, (path, status, data)
        return json.loads(data)

    def status(self, op_id: int) -> dict:
        return self.post("/get_status/", op_id=op_id)

    def upload(self, content: bytes) -> int:
        op_id = self.post("/register/")["op_id"]
        boundary = uuid.uuid4().hex
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="op_id"\r\n\r\n{op_id}\r\n'
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="people.csv"\r\n'
                "Content-Type: text/csv\r\n\r\n"
            ).encode()
            + content
            + f"\r\n--{boundary}--\r\n".encode()
        )
        status, data = self.request("POST", "/upload/", body, f"multipart/form-data; boundary={boundary}")
        assert status == 202, data
        return op_id


@pytest.fixture
def machines(tmp_path) -> dict[str, Path]:
    """A working directory and a media root for each machine, and nothing else in common."""
    homes = {}
    for name in ("web", "worker-1", "worker-2"):
        home = tmp_path / name
        (home / "media").mkdir(parents=True)
        homes[name] = home
    return homes


def files_in(home: Path) -> list[str]:
    return sorted(str(p.relative_to(home)) for p in home.rglob("*") if p.is_file() and p.suffix != ".log")


def test_web_and_workers_on_three_machines_share_only_the_database_and_s3(user, workers, s3, machines, gate):
    env = s3.env()
    held = gate("committed")
    pool = {
        name: workers.start(
            gate=held, lease_seconds=2, cwd=home, LONG_TASK_MEDIA_ROOT=home / "media", **exact_chunks(500), **env
        )
        for name, home in machines.items()
        if name.startswith("worker")
    }
    ids = {workers.worker_id(process): name for name, process in pool.items()}
    by_pid = {process.pid: name for name, process in pool.items()}
    token = Token.objects.get_or_create(user=user)[0].key
    web = machines["web"]
    with running_server(media_root=web / "media", log_path=web / "web.log", cwd=web, **env) as (_, port):
        api = Client(port, token)

        # An import, paused and resumed from its checkpoint.
        content = with_bad_rows(ROWS, bad_every=BAD_EVERY)
        op_id = api.upload(content)
        first = held.wait_held(op_id)
        assert api.post("/pause/", op_id=op_id)["state"] == S.PAUSING
        held.release(first)
        wait_for(lambda: op_in_state(op_id, S.PAUSED), what="paused")
        paused = api.status(op_id)
        assert paused["lines_finished"] == 500
        assert api.post("/resume/", op_id=op_id)["state"] == S.QUEUED

        # SIGKILL whichever worker holds it, after a chunk past the pause; the other takes over
        # from the checkpoint.
        resumed = held.wait_held(op_id)
        holder = Operation.objects.get(pk=op_id).lease_owner
        victim = ids[holder]
        assert by_pid[resumed.pid] == victim
        pool[victim].send_signal(signal.SIGKILL)
        pool[victim].wait()
        at_kill = api.status(op_id)["lines_finished"]
        assert at_kill == 1_000
        held.open(op_id)
        wait_for(lambda: op_in_state(op_id, S.COMPLETED), timeout=60, what="taken over and completed")
        chunks = [record for record in workers.chunk_records() if record["op"] == op_id]
        after_kill = {ids[record["worker"]] for record in chunks if record["last"] > at_kill}
        assert after_kill == {name for name in pool if name != victim}
        assert overlapping_chunks(chunks) == []  # I5: never two workers at once

        # I1: exactly the accepted rows, each once; the rejected ones kept as errors.
        rejected = set(range(BAD_EVERY, ROWS + 1, BAD_EVERY))
        assert stored_lines(op_id) == [n for n in range(1, ROWS + 1) if n not in rejected]
        assert set(RowError.objects.filter(operation_id=op_id).values_list("line_number", flat=True)) == rejected
        body = api.status(op_id)
        assert (body["lines_finished"], body["lines_failed"], body["total_lines"]) == (ROWS, len(rejected), ROWS)

        # An export of it, written to S3 by a worker, downloaded from the web.
        export_id = api.post("/register/", op_type="Export", source=op_id)["op_id"]
        held.open(export_id)
        api.post(f"/api/operations/{export_id}/start/")
        wait_for(lambda: op_in_state(export_id, S.COMPLETED), timeout=60, what="exported")
        status, data = api.request("GET", f"/api/operations/{export_id}/download/")
        assert status == 200
        lines = content.decode().splitlines(keepends=True)
        assert data.decode() == lines[0] + "".join(lines[n] for n in range(1, ROWS + 1) if n not in rejected)

        # I3: a second import, paused and terminated, leaves no row, no error, no object.
        doomed = api.upload(csv_bytes(ROWS))
        doomed_file = Operation.objects.get(pk=doomed).file.name
        assert f"{s3.prefix}/{doomed_file}" in s3.all_keys()
        held.wait_held(doomed)
        assert api.post("/pause/", op_id=doomed)["state"] == S.PAUSING
        held.open(doomed)
        wait_for(lambda: op_in_state(doomed, S.PAUSED), what="paused")
        assert UploadedRow.objects.filter(operation_id=doomed).exists()
        assert api.post("/terminate/", op_id=doomed, wait=10)["state"] == S.TERMINATED
        assert not UploadedRow.objects.filter(operation_id=doomed).exists()
        assert f"{s3.prefix}/{doomed_file}" not in s3.all_keys()

        kept = {Operation.objects.get(pk=op_id).file.name, Operation.objects.get(pk=export_id).file.name}
        assert s3.all_keys() == sorted(f"{s3.prefix}/{name}" for name in kept)
        assert s3.multipart_uploads() == []

    # Nothing on any machine's disk: the uploads, the parts and the export went to S3.
    for home in machines.values():
        assert files_in(home) == []
