import os

from django.apps import AppConfig
from django.conf import settings


class OperationsConfig(AppConfig):
    name = "operations"
    verbose_name = "Operations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Uploads stream into this directory before they are stored (see uploads.py).
        os.makedirs(settings.FILE_UPLOAD_TEMP_DIR, exist_ok=True)
