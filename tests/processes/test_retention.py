"""Idle workers sweep what `manage.py sweep` sweeps (tests/api/test_retention.py)."""

import pytest

from operations.models import Operation
from tests.api.test_retention import DAY, finished, incoming
from tests.support import wait_for

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]
S = Operation.State


def test_idle_workers_sweep(start_upload, workers):
    op = finished(start_upload, S.COMPLETED, days_ago=31)
    orphan = incoming("tmpxyz.upload.csv", age=DAY + 60)
    workers.start(LONG_TASK_SWEEP_SECONDS="0.2")
    wait_for(lambda: not orphan.exists(), timeout=30, what="the orphan swept")
    wait_for(lambda: Operation.objects.get(pk=op.pk).file.name == "", timeout=30, what="the old file swept")
