"""The django-background-tasks entry point. Its Task row only wakes a worker up: the truth
about an operation (state, checkpoint, lease) lives in `Operation`, and the task carries
nothing but the operation's id."""

from background_task import background


@background(name="operations.run_operation")
def run_operation(op_id: int) -> None:
    from operations import worker

    worker.run_operation(op_id)
