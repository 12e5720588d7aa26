"""The Export type (SPEC §9) run by the real worker loop, in-process: the interface's second
type, through the same services, worker and API as Upload. Real worker processes (pause,
SIGKILL, terminate) are in test_processes.py."""

import csv
import io
from pathlib import Path

import pytest
from django.conf import settings

from operations import worker
from operations.models import Operation, UploadedRow
from tests.api.test_upload_type import rich_csv
from tests.support import csv_bytes, upload_file

S = Operation.State
pytestmark = pytest.mark.django_db(transaction=True)


def imported(api, register, content: bytes) -> int:
    op_id = register()
    assert api.post("/upload/", {"op_id": op_id, "file": upload_file(content)}).status_code == 202
    worker.work_operation(op_id)
    assert Operation.objects.get(pk=op_id).state == S.COMPLETED
    return op_id


def export(api, source: int, **options) -> int:
    response = api.post("/register/", {"op_type": "Export", "source": source, **options}, format="json")
    assert response.status_code == 201, response.content
    op_id = response.json()["op_id"]
    response = api.post(f"/api/operations/{op_id}/start/")
    assert response.status_code == 202, response.content
    assert response.json()["message"] == "export started"
    return op_id


def download(api, op_id: int) -> bytes:
    response = api.get(f"/api/operations/{op_id}/download/")
    assert response.status_code == 200, getattr(response, "content", b"")
    assert response["Content-Disposition"] == f'attachment; filename="export-{op_id}.csv"'
    return b"".join(response.streaming_content)


def parsed(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


def imported_records(op_id: int, columns: list[str]) -> list[list[str]]:
    rows = UploadedRow.objects.filter(operation_id=op_id).order_by("line_number").values_list("data", flat=True)
    return [[data[name] for name in columns] for data in rows]


def test_round_trip_gives_back_exactly_the_imported_rows(api, register, chunks):
    """Quotes, newlines and CRLF inside fields, a BOM, unicode, rejected and blank lines."""
    source = rich_csv(terminator="\r\n", bom=True)
    source_id = imported(api, register, source.content())
    chunks.size = 7  # many chunks, so many parts

    op_id = export(api, source_id)
    worker.work_operation(op_id)

    status = api.get("/get_status/", {"op_id": op_id}).json()
    assert status["state"] == S.COMPLETED, status["error"]
    assert (status["lines_finished"], status["total_lines"], status["percent"]) == (51, 51, 100.0)
    records = parsed(download(api, op_id))
    assert records[0] == source.header
    assert records[1:] == imported_records(source_id, source.header)
    assert records[1:] == [[data[name] for name in source.header] for _, data in source.rows]
    assert chunks.count > 51 // 7
    # The parts are gone; only the result is left.
    exports = Path(settings.MEDIA_ROOT) / "exports"
    assert [path.name for path in exports.rglob("*") if path.is_file()] == [Path(status_file(op_id)).name]


def status_file(op_id: int) -> str:
    return Operation.objects.get(pk=op_id).file.name


def test_filter_keeps_the_matching_rows_in_line_order(api, register, chunks):
    source_id = imported(api, register, csv_bytes(500))
    chunks.size = 60
    op_id = export(api, source_id, filter={"city": "City 3"})
    worker.work_operation(op_id)
    records = parsed(download(api, op_id))
    expected = [[f"name{n}", f"+1555{n:07d}", f"user{n}@example.com", "City 3"] for n in range(1, 501) if n % 97 == 3]
    assert records == [["name", "phone", "email", "city"], *expected]
    assert Operation.objects.get(pk=op_id).lines_finished == len(expected) == 6


def test_a_filter_as_form_text_works_too(api, register):
    source_id = imported(api, register, csv_bytes(10))
    response = api.post("/register/", {"op_type": "Export", "source": source_id, "filter": '{"name": "name7"}'})
    assert response.status_code == 201, response.content
    op_id = response.json()["op_id"]
    assert api.post("/upload/", {"op_id": op_id}).json()["message"] == "export started"
    worker.work_operation(op_id)
    assert parsed(download(api, op_id))[1:] == [["name7", "+15550000007", "user7@example.com", "City 7"]]


def test_an_export_of_a_header_only_upload_is_the_header(api, register):
    source_id = imported(api, register, b"a,b\n")
    op_id = export(api, source_id)
    worker.work_operation(op_id)
    assert download(api, op_id) == b"a,b\n"


def test_pause_between_chunks_then_resume_gives_the_same_file(api, register, chunks):
    source_id = imported(api, register, rich_csv().content())
    chunks.size = 5
    whole = export(api, source_id)
    worker.work_operation(whole)

    op_id = export(api, source_id)
    chunks.count = 0
    chunks.after_chunk = lambda n: n == 3 and api.post("/pause/", {"op_id": op_id})
    worker.work_operation(op_id)
    paused = api.post("/get_status/", {"op_id": op_id}).json()
    assert paused["state"] == S.PAUSED and 0 < paused["percent"] < 100
    event = Operation.objects.get(pk=op_id).events.get(to_state=S.PAUSED)
    assert event.detail == "stopped at source line 15"
    assert api.get(f"/api/operations/{op_id}/download/").json() == {
        "message": "The export is paused: its file can be downloaded once it has completed"
    }

    chunks.after_chunk = None
    assert api.post("/resume/", {"op_id": op_id}).status_code == 202
    worker.work_operation(op_id)
    assert download(api, op_id) == download(api, whole)


def test_terminate_deletes_the_parts_and_reports_nothing(api, register, chunks):
    source_id = imported(api, register, csv_bytes(100))
    chunks.size, chunks.count = 10, 0
    op_id = export(api, source_id)
    chunks.after_chunk = lambda n: n == 4 and api.post("/pause/", {"op_id": op_id})
    worker.work_operation(op_id)
    parts = Path(settings.MEDIA_ROOT) / "exports" / str(op_id)
    # Four committed; on PostgreSQL a fifth chunk may have written its part before its checkpoint
    # found the pause and rolled back: a part that no checkpoint names.
    assert len(Operation.objects.get(pk=op_id).checkpoint["parts"]) == 4
    assert len(list(parts.iterdir())) in (4, 5)

    assert api.post("/terminate/", {"op_id": op_id}).json()["state"] == S.TERMINATING
    worker.work_operation(op_id)
    status = api.post("/get_status/", {"op_id": op_id}).json()
    assert (status["state"], status["lines_finished"]) == (S.TERMINATED, 0)
    assert not parts.exists() or not list(parts.iterdir())
    assert UploadedRow.objects.filter(operation_id=source_id).count() == 100  # the source is untouched


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "source is required"),
        ({"source": "x"}, "source must be a positive integer"),
        ({"source": 999}, "source 999 is not an Upload operation you can see"),
        (
            {"source": "SOURCE", "filter": "[1]"},
            'filter must be a JSON object of column names to values, e.g. {"city": "Paris"}',
        ),
        ({"source": "SOURCE", "filter": {"nope": "1"}}, "filter names columns the source does not have: nope"),
    ],
)
def test_registration_refuses_bad_options(api, register, body, message):
    source_id = imported(api, register, csv_bytes(3))
    body = {key: source_id if value == "SOURCE" else value for key, value in body.items()}
    response = api.post("/register/", {"op_type": "Export", **body}, format="json")
    assert response.status_code == 400
    assert response.json() == {"message": message}


def test_another_users_upload_is_no_source(api, register, other_user):
    from tests.support import token_client

    source_id = imported(api, register, csv_bytes(3))
    response = token_client(other_user).post("/register/", {"op_type": "Export", "source": source_id}, format="json")
    assert response.json() == {"message": f"source {source_id} is not an Upload operation you can see"}


def test_the_source_must_be_completed_and_no_file_is_taken(api, register):
    source_id = register()
    response = api.post("/register/", {"op_type": "Export", "source": source_id}, format="json")
    op_id = response.json()["op_id"]
    response = api.post("/upload/", {"op_id": op_id})
    assert response.status_code == 409
    assert response.json() == {
        "message": f"The source operation {source_id} is registered: an Export needs a completed Upload"
    }
    response = api.post("/upload/", {"op_id": op_id, "file": upload_file(b"a\n1\n")})
    assert response.status_code == 400
    assert response.json() == {"message": "An Export takes no file: it reads the rows of its source operation"}


def test_column_names_with_quotes_and_a_filter_on_one(api, register):
    """A JSON path cannot name a column with a double quote: such files take the other way."""
    source_id = imported(api, register, b'"a""b",c\n1,x\n2,y\n3,x\n')
    op_id = export(api, source_id, filter={'a"b': "3"})
    worker.work_operation(op_id)
    assert download(api, op_id) == b'"a""b",c\n3,x\n'
