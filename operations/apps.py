import os

from django.apps import AppConfig
from django.conf import settings


class OperationsConfig(AppConfig):
    name = "operations"
    verbose_name = "Operations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from operations import queue, tasks
        from operations.operation_types import export, registry, upload

        # On local disk, uploads stream into this directory before they are stored (see
        # uploads.py); Django's checks want it to exist from the start. (None: S3, no disk.)
        if settings.FILE_UPLOAD_TEMP_DIR:
            os.makedirs(settings.FILE_UPLOAD_TEMP_DIR, exist_ok=True)
        queue.set_enqueue(tasks.enqueue)
        registry.register(upload.Upload())
        registry.register(export.Export())
