"""What is kept on disk, and for how long: idle workers run `sweep` now and then, like
the recovery sweep, and `manage.py sweep` runs it at will (e.g. from cron on each web machine,
whose temporary upload directory no worker sees when files live in object storage).

- A temporary upload (FILE_UPLOAD_TEMP_DIR) that has not grown for LONG_TASK_INCOMING_MAX_AGE
  seconds belongs to no request any more (its web process was killed mid-upload): deleted.
- A resumable upload past LONG_TASK_UPLOAD_EXPIRY (unfinished, or finished and never taken by
  an operation) is deleted with its stored bytes (on S3 its multipart upload is aborted).
- The stored file of a finished operation (completed or terminated: an Upload's input, an
  Export's result) is deleted LONG_TASK_RETENTION_DAYS after it finished (0: kept forever). The
  operation, its rows and its history stay; the deletion is recorded as an event.
"""

import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from operations import storage
from operations.models import Operation
from operations.state_machine import Actor, record
from operations.tus import services as tus

logger = logging.getLogger(__name__)
SYSTEM = Actor("system")


@dataclass
class Swept:
    temporary_files: int = 0
    stored_files: int = 0
    expired_uploads: int = 0


def sweep() -> Swept:
    """Delete orphaned temporary uploads, expired resumable uploads and the files of operations
    past their retention."""
    swept = Swept(temporary_files=_sweep_incoming(), stored_files=_sweep_stored(), expired_uploads=tus.sweep_expired())
    if swept.temporary_files or swept.stored_files or swept.expired_uploads:
        logger.info(
            "sweep: %s temporary uploads, %s stored files, %s expired resumable uploads deleted",
            swept.temporary_files,
            swept.stored_files,
            swept.expired_uploads,
        )
    return swept


def _sweep_incoming() -> int:
    directory = Path(settings.FILE_UPLOAD_TEMP_DIR or "")
    if not settings.FILE_UPLOAD_TEMP_DIR or not directory.is_dir():
        return 0
    cutoff = time.time() - settings.LONG_TASK_INCOMING_MAX_AGE
    deleted = 0
    for path in directory.iterdir():
        try:
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
                deleted += 1
        except FileNotFoundError:
            pass  # finished (renamed into storage) or deleted meanwhile
    return deleted


def _sweep_stored(*, batch: int = 500) -> int:
    days = settings.LONG_TASK_RETENTION_DAYS
    if days <= 0:
        return 0
    cutoff = timezone.now() - timedelta(days=days)
    expired = Operation.objects.finished().filter(finished_at__lt=cutoff).exclude(file="")
    deleted = 0
    for op_id, name in expired.values_list("id", "file")[:batch]:
        with transaction.atomic():
            # The database first: a file whose deletion fails is an orphan, never a dangling name.
            if not Operation.objects.filter(pk=op_id, file=name).update(file=""):
                continue
            op = Operation.objects.get(pk=op_id)
            record(op, from_state=op.state, actor=SYSTEM, detail=f"stored file deleted after {days:g} days")
        storage.delete(name)
        deleted += 1
    return deleted
