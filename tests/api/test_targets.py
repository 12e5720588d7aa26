"""Imports into a target's own table (SPEC §13), run by the real worker loop in-process.

Each test registers an Upload with `target=contacts`, starts it through the API, then calls
`worker.work_operation` here; `chunks` fixes the chunk size so that small files take many
chunks. Expected rows and row errors are written beside each file, line by line.
"""

import csv
import io
import json

import pytest

from contacts.models import Contact
from operations import worker
from operations.models import Operation, RowError
from tests.conftest import upload_file

S = Operation.State
HEADER = ["name", "email", "phone", "city", "signup_date", "score"]


def csv_text(rows, header=HEADER) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


def register_target(api, **options) -> int:
    body = {"op_type": "Upload", "target": "contacts", **options}
    if isinstance(body.get("mapping"), dict):
        body["mapping"] = json.dumps(body["mapping"])
    response = api.post("/register/", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()["op_id"]


def start(api, content: bytes, **options) -> int:
    op_id = register_target(api, **options)
    response = api.post("/upload/", {"op_id": op_id, "file": upload_file(content)})
    assert response.status_code == 202, response.content
    return op_id


def imported(op_id: int) -> list[tuple]:
    return list(
        Contact.objects.filter(import_operation=op_id)
        .order_by("import_line")
        .values_list("import_line", "name", "email", "phone", "city", "signup_date", "score")
    )


def errors(op_id: int) -> list[tuple[int, str]]:
    return list(
        RowError.objects.filter(operation_id=op_id).order_by("line_number").values_list("line_number", "reason")
    )


def people(n: int, start: int = 1) -> list[list[str]]:
    return [
        [f"person {i}", f"p{i}@example.com", f"+33 {i}", "Paris", f"2024-01-{1 + i % 28:02d}", str(i)]
        for i in range(start, start + n)
    ]


# --- a plain import -------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("size", [1, 3, 1000])
def test_rows_land_typed_in_the_target_table_once_each(api, chunks, size):
    import datetime

    chunks.size = size
    op_id = start(api, csv_text(people(10)))
    worker.work_operation(op_id)
    op = Operation.objects.get(pk=op_id)
    assert (op.state, op.lines_finished, op.lines_failed) == (S.COMPLETED, 10, 0)
    rows = imported(op_id)
    assert [row[0] for row in rows] == list(range(1, 11))
    assert rows[6] == (7, "person 7", "p7@example.com", "+33 7", "Paris", datetime.date(2024, 1, 8), 7)
    assert not RowError.objects.filter(operation_id=op_id).exists()
