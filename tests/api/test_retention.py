"""Disk does not grow without bound: orphaned temporary uploads and the files of finished
operations past their retention are swept, by `manage.py sweep` and (in
tests/processes/test_retention.py) by idle workers."""

import io
import os
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.utils import timezone

from operations.models import Operation, OperationEvent
from tests.support import csv_bytes, operation_in_state

S = Operation.State
DAY = 24 * 3600


def aged(path: Path, seconds: float) -> Path:
    then = time.time() - seconds
    os.utime(path, (then, then))
    return path


def incoming(name: str, *, age: float) -> Path:
    path = Path(settings.FILE_UPLOAD_TEMP_DIR) / name
    path.write_bytes(b"a,b\n1,2\n")
    return aged(path, age)


def sweep() -> str:
    out = io.StringIO()
    call_command("sweep", stdout=out)
    return out.getvalue().strip()


@pytest.mark.django_db
def test_an_orphaned_temporary_upload_is_swept():
    """A web process killed mid-upload left its temporary file in media/incoming/ forever."""
    orphan = incoming("tmpabc.upload.csv", age=DAY + 60)
    growing = incoming("tmpdef.upload.csv", age=60)  # an upload going on: written a minute ago
    assert sweep() == "1 temporary uploads, 0 stored files and 0 expired resumable uploads deleted"
    assert not orphan.exists()
    assert growing.exists()


def finished(start_upload, state: str, *, days_ago: float) -> Operation:
    op_id = start_upload(csv_bytes(3))
    return operation_in_state(state, op_id=op_id, finished_at=timezone.now() - timedelta(days=days_ago))


@pytest.mark.django_db
def test_stored_files_of_finished_operations_are_deleted_after_the_retention(start_upload, api):
    """Stored files of completed operations were never deleted."""
    old = finished(start_upload, S.COMPLETED, days_ago=31)
    recent = finished(start_upload, S.COMPLETED, days_ago=29)
    failed = finished(start_upload, S.FAILED, days_ago=300)  # resumable: its input stays
    paths = {op.pk: Path(settings.MEDIA_ROOT) / op.file.name for op in (old, recent, failed)}
    assert all(path.exists() for path in paths.values())

    assert sweep() == "0 temporary uploads, 1 stored files and 0 expired resumable uploads deleted"

    assert not paths[old.pk].exists()
    assert paths[recent.pk].exists() and paths[failed.pk].exists()
    old.refresh_from_db()
    assert (old.file.name, old.state) == ("", S.COMPLETED)
    event = OperationEvent.objects.filter(operation=old).last()
    assert (event.actor, event.from_state, event.to_state) == ("system", S.COMPLETED, S.COMPLETED)
    assert event.detail == "stored file deleted after 30 days"
    response = api.get(f"/api/operations/{old.pk}/download/")
    assert response.status_code == 409
    assert sweep() == "0 temporary uploads, 0 stored files and 0 expired resumable uploads deleted"


@pytest.mark.django_db
def test_a_retention_of_zero_keeps_files_forever(start_upload, settings):
    settings.LONG_TASK_RETENTION_DAYS = 0
    op = finished(start_upload, S.COMPLETED, days_ago=3650)
    assert sweep() == "0 temporary uploads, 0 stored files and 0 expired resumable uploads deleted"
    assert (Path(settings.MEDIA_ROOT) / op.file.name).exists()
