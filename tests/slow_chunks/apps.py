import os
import time

from django.apps import AppConfig


class SlowChunksConfig(AppConfig):
    name = "tests.slow_chunks"

    def ready(self) -> None:
        delay = float(os.environ.get("LONG_TASK_TEST_CHUNK_DELAY", "0") or 0)
        if not delay:
            return
        from operations.operation_types.upload import UploadJob

        original = UploadJob.run_chunk

        def slow_run_chunk(self, *, max_rows):
            progress = original(self, max_rows=max_rows)
            time.sleep(delay)  # rows written, transaction still open
            return progress

        UploadJob.run_chunk = slow_run_chunk
