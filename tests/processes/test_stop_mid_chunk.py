"""PostgreSQL: a pause or a terminate cancels the chunk it finds in the middle of a statement
(operations/stop_requests.py), instead of waiting for the chunk's checkpoint. The worker is
held inside its first chunk by a statement that would run for an hour (tests/worker_hooks'
Staller): without the cancel, neither request could take effect within the tests' waits."""

import pytest
from django.db import connection

from contacts.models import Contact
from operations.models import Operation, UploadedRow
from tests.conftest import csv_bytes, op_in_state, upload_file, wait_for

pytestmark = [
    pytest.mark.processes,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="stop requests are heard on PostgreSQL only"),
]
S = Operation.State
ROWS = 1_000
CHUNK = 300


def start(api, **options) -> int:
    response = api.post("/register/", {"op_type": "Upload", **options}, format="json")
    assert response.status_code == 201, response.content
    op_id = response.json()["op_id"]
    content = csv_bytes(ROWS) if not options else contacts(ROWS)
    response = api.post("/upload/", {"op_id": op_id, "file": upload_file(content)})
    assert response.status_code == 202, response.content
    return op_id


def contacts(rows: int) -> bytes:
    lines = ["name,email"] + [f"person {i},p{i}@example.com" for i in range(1, rows + 1)]
    return ("\n".join(lines) + "\n").encode()


def stored(op_id: int, target: bool) -> int:
    if target:
        return Contact.objects.filter(import_operation=op_id).count()
    return UploadedRow.objects.filter(operation_id=op_id).count()


def stalled_worker(workers, tmp_path):
    stall = tmp_path / "stall"
    stall.mkdir()
    workers.start(LONG_TASK_TEST_STALL=stall, LONG_TASK_CHUNK_ROWS=CHUNK, LONG_TASK_FIRST_CHUNK_ROWS=CHUNK)
    return stall


@pytest.mark.parametrize("target", [False, True], ids=["uploaded-rows", "contacts"])
def test_a_pause_cancels_the_statement_a_chunk_is_in_and_the_resume_loses_no_row(api, workers, tmp_path, target):
    stall = stalled_worker(workers, tmp_path)
    op_id = start(api, **({"target": "contacts"} if target else {}))
    wait_for(lambda: (stall / f"{op_id}.stalled").exists(), what="the first chunk stalled in its statement")

    assert api.post("/pause/", {"op_id": op_id}).json()["state"] == S.PAUSING
    wait_for(lambda: op_in_state(op_id, S.PAUSED), timeout=30, what="paused while the statement ran")
    op = Operation.objects.get(pk=op_id)
    assert (op.lines_finished, stored(op_id, target)) == (0, 0), "the cancelled chunk rolled back whole"
    assert op.events.filter(to_state=S.PAUSED).get().detail == "stopped at line 0"

    assert api.post("/resume/", {"op_id": op_id}).status_code == 202
    wait_for(lambda: op_in_state(op_id, S.COMPLETED), timeout=60, what="completed")
    op = Operation.objects.get(pk=op_id)
    assert (op.lines_finished, op.lines_failed, stored(op_id, target)) == (ROWS, 0, ROWS)


def test_a_terminate_cancels_the_statement_a_chunk_is_in_and_leaves_nothing(api, workers, tmp_path):
    stall = stalled_worker(workers, tmp_path)
    op_id = start(api, target="contacts")
    wait_for(lambda: (stall / f"{op_id}.stalled").exists(), what="the first chunk stalled in its statement")

    assert api.post("/terminate/", {"op_id": op_id, "force": True}).json()["state"] == S.TERMINATING
    wait_for(lambda: op_in_state(op_id, S.TERMINATED), timeout=30, what="terminated while the statement ran")
    assert stored(op_id, True) == 0
