"""Results out (SPEC §6) through a real worker: what an import stored streams back exactly."""

import csv
import io
import json

import pytest

from operations.models import Operation
from tests.api.test_results import body_of, rows_url
from tests.support import csv_bytes, op_in_state, wait_for

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]
S = Operation.State


# --- the round trip through a real worker -----------------------------------------------------

TRICKY_CSV = (
    "\ufeffname,comment,city\n"
    'Ann,"said ""hello"", then left",Zürich\n'
    'Bob,"two\nlines, and a comma",東京\n'
    "Cé,plain,\n"  # an empty last field
    "broken,row\n"  # rejected: two fields
    '"Dee","emoji 🎉, ""quoted""","São Paulo"\r\n'
    "\n"  # blank: skipped
    'Eve,"ends with a newline\n",Oslo\n'
)


def test_csv_round_trip_gives_back_exactly_the_accepted_rows(api, start_upload, workers):
    workers.start()
    op_id = start_upload(TRICKY_CSV.encode())
    op = wait_for(lambda: op_in_state(op_id, S.COMPLETED, S.FAILED), timeout=60, what="completed")
    assert op.state == S.COMPLETED, op.error
    assert (op.lines_finished, op.lines_failed) == (6, 1)

    response = api.get(rows_url(op_id), {"format": "csv"})
    downloaded = list(csv.reader(io.StringIO(body_of(response))))
    expected = [row for row in csv.reader(io.StringIO(TRICKY_CSV.removeprefix("\ufeff"))) if row and len(row) == 3]
    assert downloaded == expected
    assert downloaded[0] == ["name", "comment", "city"] and len(downloaded) == 6

    lines = [
        json.loads(line)["line_number"]
        for line in body_of(api.get(rows_url(op_id), {"format": "jsonl"})).split("\n")
        if line
    ]
    assert lines == [1, 2, 3, 5, 6]
    errors = list(csv.reader(io.StringIO(body_of(api.get(f"/api/operations/{op_id}/row-errors/", {"format": "csv"})))))
    assert errors == [["line_number", "reason", "raw"], ["4", "expected 3 fields, found 2", "broken,row"]]


def test_a_large_import_streams_back_in_line_order(api, start_upload, workers):
    content = csv_bytes(30_000)
    workers.start()
    op_id = start_upload(content)
    wait_for(lambda: op_in_state(op_id, S.COMPLETED), timeout=60, what="completed")
    assert body_of(api.get(rows_url(op_id), {"format": "csv"})).encode() == content
