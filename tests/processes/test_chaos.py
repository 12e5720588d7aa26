"""A small chaos run inside the test suite (`make chaos` is the long one): random pauses,
resumes, terminates, SIGKILLs and SIGTERMs, half the operations importing into the contacts
target; no row lost or doubled in either table, the application's contacts untouched, no two
workers at once."""

import pytest

from tests.chaos import ChaosConfig, run_chaos

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]


def test_chaos(api, workers):
    report = run_chaos(ChaosConfig(ops=8, rows=2_000, workers=3, seconds=12, seed=7), workers, api)
    print(report.table())
    assert report.kills + report.sigterms > 0 and report.pauses > 0 and report.resumes > 0
    assert report.chunks > 0 and report.rows_checked > 0
    assert report.target_operations == 4
    assert (report.lost_rows, report.duplicate_rows, report.extra_rows, report.overlaps) == (0, 0, 0, 0)
    assert report.application_rows_changed == 0
    assert report.problems == []
