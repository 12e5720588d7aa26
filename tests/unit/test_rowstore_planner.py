"""The export's COPY switches PostgreSQL's seqscan and bitmapscan off so that it walks the primary
key, in line order, with no sort (kept for its figure: docs/performance.md, "Private APIs
kept"). If a PostgreSQL version stops honouring those settings, this fails."""

import pytest
from django.db import connection

from operations import rowstore
from operations.models import Operation, UploadedRow

pytestmark = [
    pytest.mark.skipif("connection.vendor != 'postgresql'", reason="PostgreSQL's planner"),
    pytest.mark.django_db,
]


def test_under_the_settings_a_range_is_read_by_the_primary_key_without_a_sort():
    op = Operation.objects.create(state=Operation.State.RUNNING)
    rowstore.insert_rows((op.pk, line, '{"a": "1"}') for line in range(1, 2001))
    connection.ensure_connection()
    raw = connection.connection
    query = (
        f"EXPLAIN SELECT data ->> 'a' FROM {UploadedRow._meta.db_table}"
        " WHERE operation_id = %s AND line_number > %s AND line_number <= %s ORDER BY line_number"
    )

    def plan() -> str:
        return "\n".join(line for (line,) in raw.execute(query, [op.pk, 100, 1900]).fetchall())

    # Index scans made dear (for this test's transaction only): left alone, the planner sorts.
    raw.execute("SET LOCAL random_page_cost = 1000")
    assert "Sort" in plan()
    with rowstore._primary_key_order(raw):
        walked = plan()
    assert "Index Scan using operations_uploadedrow_pkey" in walked and "Sort" not in walked, walked
