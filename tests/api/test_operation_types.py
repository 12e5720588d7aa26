"""SPEC §9: a new operation type plugs in through the registry alone. `Countdown` below is
the example of docs/operation-types.md: it counts to `n` in chunks, writing nothing."""

from collections.abc import Mapping

import pytest

from operations import worker
from operations.errors import BadInput
from operations.models import Operation
from operations.operation_types import registry
from operations.operation_types.base import Chunk, Job, OperationType, Progress

S = Operation.State


class CountdownJob(Job):
    def __init__(self, op: Operation):
        self.done, self.total = op.lines_finished, op.options["n"]

    def read_chunk(self, *, max_rows: int) -> Chunk:
        step = min(max_rows, self.total - self.done)
        self.done += step
        finished = self.done == self.total
        checkpoint = {"position": self.done, "lines_finished": self.done}
        return Chunk(progress=Progress(checkpoint=checkpoint, finished=finished), units=step)

    def write_chunk(self, chunk: Chunk) -> None:
        pass  # a real type writes here, inside the chunk's transaction


class Countdown(OperationType):
    name = "Countdown"

    def prepare_input(self, op: Operation, *, data: Mapping, files: Mapping) -> dict:
        try:
            n = int(data.get("n", ""))
        except ValueError:
            raise BadInput("n must be an integer") from None
        return {"options": {**op.options, "n": n}}

    def percent_done(self, op: Operation) -> float | None:
        return 100.0 * op.lines_finished / op.options["n"] if op.options.get("n") else None

    def open(self, op: Operation) -> Job:
        return CountdownJob(op)

    def rollback_done(self, op: Operation) -> bool:
        return True  # it wrote nothing

    def rollback_chunk(self, op: Operation, *, max_rows: int) -> int:
        return op.rollback_position

    def rollback_rest(self, op: Operation) -> dict:
        return {"lines_finished": 0, "position": 0}


@pytest.fixture
def countdown():
    registry.register(Countdown())
    yield
    registry.unregister("Countdown")


@pytest.mark.django_db(transaction=True)
def test_a_new_type_runs_through_the_same_api_and_worker(api, countdown, settings):
    settings.LONG_TASK_CHUNK_SECONDS = 0.001
    response = api.post("/register/", {"op_type": "Countdown"}, format="json")
    assert response.status_code == 201 and response.json()["op_type"] == "Countdown"
    op_id = response.json()["op_id"]

    assert api.post("/upload/", {"op_id": op_id, "n": "lots"}).json() == {"message": "n must be an integer"}
    response = api.post("/upload/", {"op_id": op_id, "n": 5000})
    assert response.status_code == 202 and response.json()["message"] == "countdown started"

    assert api.post("/pause/", {"op_id": op_id}).json()["state"] == S.PAUSED  # still queued: at once
    assert api.post("/upload/", {"op_id": op_id}).json()["message"] == "countdown resumed"
    worker.work_operation(op_id)

    status = api.get("/get_status/", {"op_id": op_id}).json()
    assert (status["state"], status["lines_finished"], status["percent"]) == (S.COMPLETED, 5000, 100.0)
    steps = [e.to_state for e in Operation.objects.get(pk=op_id).events.order_by("id")]
    # The refused start ("n must be an integer") is in the history too, in its own event.
    assert steps == [S.REGISTERED, S.REGISTERED, S.QUEUED, S.PAUSED, S.QUEUED, S.RUNNING, S.COMPLETED]


@pytest.mark.django_db
def test_unknown_types_are_refused(api):
    response = api.post("/register/", {"op_type": "Nope"}, format="json")
    assert response.status_code == 400
    assert response.json() == {"message": "Unknown op_type 'Nope'. Known types: Export, Upload"}
