"""SPEC §13 with §4's I1, I2, I3, I4 in the target's own table, with real worker processes:
SIGKILL inside a chunk, pause and resume at a chunk boundary, a terminate whose rollback is
killed half way. The worker is held at a chunk boundary by the gate (tests/gate.py), with chunks
of exactly CHUNK rows, so the test acts where it says, however fast the machine is.

The file has bad cells and duplicate keys in and across chunks; what an import must store is
worked out beside it (`expected`), row by row, independently of the import."""

import csv
import io
import json
import signal

import pytest

from contacts.models import Contact
from operations.models import Operation, RowError
from tests.conftest import op_in_state, upload_file, wait_for
from tests.support import exact_chunks

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]
S = Operation.State
LEASE = 2.0
CHUNK = 500
CHUNKS = exact_chunks(CHUNK)
ROWS = 2_000


def contacts_file(rows: int = ROWS) -> tuple[bytes, list[int], list[int]]:
    """The file, the lines an import stores and the lines it rejects: every 97th row has a bad
    score, every 89th repeats the e-mail of the row 600 lines before (another chunk) or, every
    89th + 1, of the row before (the same chunk)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["Name", "E-mail", "City", "Score"])
    seen, stored, rejected = set(), [], []
    for i in range(1, rows + 1):
        email = f"p{i}@example.com"
        if i % 89 == 0 and i > 600:
            email = f"p{i - 600}@example.com"
        elif i % 89 == 1 and i > 1:
            email = f"p{i - 1}@example.com"
        score = "bad" if i % 97 == 0 else str(i)
        writer.writerow([f"person {i}", email, "Paris", score])
        if score == "bad" or email in seen:
            rejected.append(i)
        else:
            seen.add(email)
            stored.append(i)
    return out.getvalue().encode(), stored, rejected


def start(api, content: bytes) -> int:
    response = api.post("/register/", {"op_type": "Upload", "target": "contacts"}, format="json")
    assert response.status_code == 201, response.content
    op_id = response.json()["op_id"]
    response = api.post("/upload/", {"op_id": op_id, "file": upload_file(content)})
    assert response.status_code == 202, response.content
    return op_id


def stored(op_id: int) -> list[int]:
    return list(
        Contact.objects.filter(import_operation=op_id).order_by("import_line").values_list("import_line", flat=True)
    )


def rejected(op_id: int) -> list[int]:
    return list(
        RowError.objects.filter(operation_id=op_id).order_by("line_number").values_list("line_number", flat=True)
    )


def assert_exact(op_id: int, lines: list[int], bad: list[int]) -> None:
    op = Operation.objects.get(pk=op_id)
    assert (op.state, op.lines_finished, op.lines_failed) == (S.COMPLETED, ROWS, len(bad))
    assert stored(op_id) == lines
    assert rejected(op_id) == bad


def test_a_killed_workers_target_import_is_taken_over_without_losing_or_doubling_a_row(api, workers, gate):
    content, lines, bad = contacts_file()
    application_row = Contact.objects.create(name="Mine", email="mine@example.com")
    held = gate("written")
    doomed = workers.start(gate=held, lease_seconds=LEASE, **CHUNKS)
    op_id = start(api, content)
    held.pass_through(op_id, "written", 1)  # inside the second chunk: rows written, not committed
    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    assert Operation.objects.get(pk=op_id).lines_finished == CHUNK
    assert stored(op_id) == [line for line in lines if line <= CHUNK], "the chunk in flight was not committed"

    workers.start(lease_seconds=LEASE, **CHUNKS)
    wait_for(lambda: op_in_state(op_id, S.COMPLETED), timeout=LEASE + 60, what="completed")
    assert_exact(op_id, lines, bad)
    assert Contact.objects.get(pk=application_row.pk).import_operation is None


def test_pause_and_resume_at_a_chunk_boundary_give_the_uninterrupted_result(api, workers, gate):
    content, lines, bad = contacts_file()
    held = gate("committed")
    workers.start(gate=held, lease_seconds=LEASE, **CHUNKS)
    op_id = start(api, content)
    after_two = held.pass_through(op_id, "committed", 1)
    assert api.post("/pause/", {"op_id": op_id}).json()["state"] == S.PAUSING
    held.release(after_two)
    wait_for(lambda: op_in_state(op_id, S.PAUSED), what="paused")
    op = Operation.objects.get(pk=op_id)
    assert op.lines_finished == 2 * CHUNK  # I2: nothing after the request committed
    assert stored(op_id) == [line for line in lines if line <= 2 * CHUNK]
    held.open(op_id)
    assert api.post("/resume/", {"op_id": op_id}).status_code == 202
    wait_for(lambda: op_in_state(op_id, S.COMPLETED), timeout=60, what="completed")
    assert_exact(op_id, lines, bad)
    body = b"".join(api.get(f"/api/operations/{op_id}/rows/?format=jsonl").streaming_content).decode()
    first = json.loads(body.splitlines()[0])
    assert first == {
        "line_number": 1,
        "data": {"Name": "person 1", "E-mail": "p1@example.com", "City": "Paris", "Score": 1},
    }


def test_a_terminate_whose_rollback_is_killed_half_way_leaves_the_table_as_it_was(api, workers, gate):
    content, _, _ = contacts_file()
    Contact.objects.create(name="Mine", email="mine@example.com")
    other = start(api, contacts_file(30)[0].replace(b"@example.com", b"@other.org"))
    held = gate("committed", "rollback")
    first = workers.start(gate=held, lease_seconds=LEASE, LONG_TASK_ROLLBACK_CHUNK_ROWS=200, **CHUNKS)
    held.open(other)
    wait_for(lambda: op_in_state(other, S.COMPLETED), what="the other import completed")
    before = sorted(Contact.objects.values_list("id", "name", "email", "import_operation", "import_line"))

    op_id = start(api, content)
    after_two = held.pass_through(op_id, "committed", 1)
    assert api.post("/pause/", {"op_id": op_id}).json()["state"] == S.PAUSING
    held.release(after_two)
    wait_for(lambda: op_in_state(op_id, S.PAUSED), what="paused")
    assert len(stored(op_id)) > 400
    assert api.post("/terminate/", {"op_id": op_id}).json()["state"] == S.TERMINATING
    held.wait_held(op_id, "rollback", n=1)  # one rollback chunk of 200 lines committed
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert stored(op_id) and all(line > 200 for line in stored(op_id))

    workers.start(lease_seconds=LEASE)
    wait_for(lambda: op_in_state(op_id, S.TERMINATED), timeout=LEASE + 30, what="terminated")
    assert sorted(Contact.objects.values_list("id", "name", "email", "import_operation", "import_line")) == before
