"""A dry run into a target survives a SIGKILL inside a chunk like any import (SPEC §4, §10):
the chunk in flight leaves neither row errors nor kept keys behind, the worker that takes over
goes on from the checkpoint, and the verdicts are the ones an import gives, with nothing in
the target's table. The file and its expected verdicts are test_target_crash.py's."""

import signal

import pytest

from contacts.models import Contact
from operations.models import DryRunKey, Operation
from tests.conftest import op_in_state, upload_file, wait_for
from tests.processes.test_target_crash import CHUNK, CHUNKS, LEASE, ROWS, contacts_file, rejected

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]
S = Operation.State


def test_a_killed_workers_dry_run_is_taken_over_with_the_imports_verdicts(api, workers, gate):
    content, _, bad = contacts_file()
    Contact.objects.create(name="Mine", email="mine@example.com")
    held = gate("written")
    doomed = workers.start(gate=held, lease_seconds=LEASE, **CHUNKS)
    response = api.post("/register/", {"op_type": "Upload", "target": "contacts", "dry_run": True}, format="json")
    op_id = response.json()["op_id"]
    assert api.post("/upload/", {"op_id": op_id, "file": upload_file(content)}).status_code == 202
    held.pass_through(op_id, "written", 1)  # inside the second chunk: checked, not committed
    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    op = Operation.objects.get(pk=op_id)
    assert op.lines_finished == CHUNK
    assert rejected(op_id) == [line for line in bad if line <= CHUNK]
    assert set(DryRunKey.objects.filter(operation_id=op_id).values_list("line", flat=True)) == {
        line for line in range(1, CHUNK + 1) if line not in bad
    }

    workers.start(lease_seconds=LEASE, **CHUNKS)
    wait_for(lambda: op_in_state(op_id, S.COMPLETED), timeout=LEASE + 60, what="completed")
    op = Operation.objects.get(pk=op_id)
    assert (op.lines_finished, op.lines_failed) == (ROWS, len(bad))
    assert rejected(op_id) == bad
    assert list(Contact.objects.values_list("name", flat=True)) == ["Mine"]
    assert not DryRunKey.objects.filter(operation_id=op_id).exists()
