import json
import os
import time
from pathlib import Path

from django.apps import AppConfig
from django.db import transaction


def _seconds(name: str) -> float:
    return float(os.environ.get(name, "0") or 0)


class WorkerHooksConfig(AppConfig):
    name = "tests.worker_hooks"

    def ready(self) -> None:
        from operations import worker
        from operations.operation_types.export import ExportJob
        from operations.operation_types.upload import Upload, UploadJob

        chunk_delay = _seconds("LONG_TASK_TEST_CHUNK_DELAY")
        rollback_delay = _seconds("LONG_TASK_TEST_ROLLBACK_DELAY")
        log_dir = os.environ.get("LONG_TASK_TEST_CHUNK_LOG")

        def hook(job_class):
            write_chunk = job_class.write_chunk

            def hooked_write_chunk(self, chunk):
                started = time.time()
                first = chunk.first_line if hasattr(chunk, "first_line") else chunk.after + 1
                write_chunk(self, chunk)
                if chunk_delay:
                    time.sleep(chunk_delay)  # rows written, transaction still open
                if log_dir and chunk.units:
                    record = {
                        "op": self.op_id,
                        "worker": worker.worker_id(),
                        "first": first,
                        "last": chunk.progress.checkpoint["lines_finished"],
                        "start": started,
                    }
                    transaction.on_commit(lambda: _append(log_dir, {**record, "end": time.time()}))

            job_class.write_chunk = hooked_write_chunk

        hook(UploadJob)
        hook(ExportJob)

        if rollback_delay:
            rollback_chunk = Upload.rollback_chunk

            def slow_rollback_chunk(self, op, *, max_rows):
                position = rollback_chunk(self, op, max_rows=min(max_rows, 200))
                time.sleep(rollback_delay)
                return position

            Upload.rollback_chunk = slow_rollback_chunk


def _append(log_dir: str, record: dict) -> None:
    with open(Path(log_dir) / f"{os.getpid()}.jsonl", "a") as log:
        log.write(json.dumps(record) + "\n")
