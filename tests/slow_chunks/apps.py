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

        original = UploadJob.write_chunk

        def slow_write_chunk(self, chunk):
            original(self, chunk)
            time.sleep(delay)  # rows written, transaction still open

        UploadJob.write_chunk = slow_write_chunk
