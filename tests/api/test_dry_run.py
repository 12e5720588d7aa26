"""Dry runs (`dry_run=true`) and the import of what one checked (SPEC §10, §13), run by the real
worker loop in-process: a dry run stores only row errors and totals, gives the rows the
verdicts their import gives them (unique keys within the file and against the table
included), pauses and resumes like any import, and hands its stored file to the import."""

import pytest

from contacts.models import Contact
from operations import retention, storage, worker
from operations.models import DryRunKey, Operation, RowError, UploadedRow
from operations.operation_types.dry_run import reason_kind
from tests.api import tus_client as tc
from tests.api.test_targets import MIXED, csv_text, errors, imported, people, register_target, request
from tests.conftest import upload_file
from tests.support import token_client

S = Operation.State


def start(api, content: bytes, **options) -> int:
    op_id = register_target(api, **options)
    response = api.post("/upload/", {"op_id": op_id, "file": upload_file(content)})
    assert response.status_code == 202, response.content
    return op_id


def import_of(api, op_id: int) -> int:
    response = api.post(f"/api/operations/{op_id}/import/", format="json")
    assert response.status_code == 201, response.content
    return response.json()["op_id"]


def status(api, op_id: int) -> dict:
    response = api.get(f"/api/operations/{op_id}/")
    assert response.status_code == 200, response.content
    return response.json()


def table() -> list[tuple]:
    return sorted(Contact.objects.values_list("id", "name", "email", "score", "import_operation", "import_line"))


# Rows of MIXED twice (the second half's keys repeat the first's, across chunks), rows whose
# e-mail the table holds already, and a row of the wrong width.
ROWS = [row for row, _ in MIXED] * 2 + people(3, start=1) + [["Zed", "zed@example.com", "", "", "", ""]]
CONTENT = csv_text(ROWS) + b"short,row\n"


@pytest.fixture
def in_the_table(db):
    Contact.objects.create(name="Mine", email="p2@example.com", score=1)
    Contact.objects.create(name="Mine too", email="zed@example.com")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("size", [1, 3, 100])
def test_a_dry_run_and_its_import_reject_the_same_lines_for_the_same_reasons(api, chunks, in_the_table, size):
    chunks.size = size
    before = table()
    checked = start(api, CONTENT, dry_run="true")
    worker.work_operation(checked)
    op = Operation.objects.get(pk=checked)
    assert op.state == S.COMPLETED
    assert table() == before  # nothing written into the target's table
    assert not DryRunKey.objects.filter(operation_id=checked).exists()  # its kept keys are gone
    verdicts = errors(checked)
    lines = [line for line, _ in verdicts]
    duplicates = [line for line, reason in verdicts if "of this file" in reason]
    in_table = [line for line, reason in verdicts if "already in the table" in reason]
    assert duplicates and in_table and len(MIXED) + 7 in duplicates  # "Ann again", and the repeats
    assert lines[-1] == len(ROWS) + 1  # the short row

    imported_by = import_of(api, checked)
    worker.work_operation(imported_by)
    assert Operation.objects.get(pk=imported_by).state == S.COMPLETED
    assert errors(imported_by) == verdicts
    stored = [line for line, *_ in imported(imported_by)]
    assert stored == [line for line in range(1, len(ROWS) + 2) if line not in lines]
    summary = status(api, checked)["dry_run"]
    assert summary["accepted"] == len(stored) and summary["rejected"] == len(lines)
    assert summary["import_operation"] == imported_by


@pytest.mark.django_db(transaction=True)
def test_the_totals_count_rejected_rows_by_reason(api, chunks, in_the_table):
    checked = start(api, CONTENT, dry_run="true")
    worker.work_operation(checked)
    summary = status(api, checked)["dry_run"]
    by_reason = summary["rejected_by_reason"]
    assert by_reason["score is not an integer"] == 2  # Bob twice (Fay counts by her first bad cell)
    assert by_reason["email is already in this file"] == 4  # Ann again, then Ann, Ann again, Hal repeated
    assert by_reason["email is already in the table"] == 2
    assert by_reason["expected 6 fields, found 2"] == 1
    assert sum(by_reason.values()) == summary["rejected"] == Operation.objects.get(pk=checked).lines_failed
    assert [error["line_number"] for error in summary["first_errors"]] == [line for line, _ in errors(checked)][:5]


@pytest.mark.django_db(transaction=True)
def test_a_dry_run_paused_after_every_chunk_gives_the_uninterrupted_verdicts(api, chunks, in_the_table):
    reference = start(api, CONTENT, dry_run="true")
    worker.work_operation(reference)
    expected = errors(reference), status(api, reference)["dry_run"]["rejected_by_reason"]

    checked = start(api, CONTENT, dry_run="true")
    chunks.after_chunk = lambda count: request(api, "pause", checked)
    pauses = 0
    while Operation.objects.get(pk=checked).state != S.COMPLETED:
        worker.work_operation(checked)
        state = Operation.objects.get(pk=checked).state
        assert state in (S.PAUSED, S.COMPLETED), Operation.objects.get(pk=checked).error
        if state == S.PAUSED:
            pauses += 1
            request(api, "resume", checked)
        assert pauses < 100
    assert pauses >= len(ROWS) // chunks.size - 1
    assert (errors(checked), status(api, checked)["dry_run"]["rejected_by_reason"]) == expected


@pytest.mark.django_db(transaction=True)
def test_a_plain_dry_run_stores_no_rows_and_its_import_does(api, chunks):
    content = b"a,b\n1,2\n3\n4,5\n6,7,8\n"
    checked = api.post("/register/", {"op_type": "Upload", "dry_run": True}, format="json").json()["op_id"]
    assert api.post("/upload/", {"op_id": checked, "file": upload_file(content)}).status_code == 202
    worker.work_operation(checked)
    assert not UploadedRow.objects.filter(operation_id=checked).exists()
    assert [line for line, _ in errors(checked)] == [2, 4]
    imported_by = import_of(api, checked)
    worker.work_operation(imported_by)
    assert list(UploadedRow.objects.filter(operation_id=imported_by).values_list("line_number", flat=True)) == [1, 3]
    assert [line for line, _ in errors(imported_by)] == [2, 4]


@pytest.mark.django_db(transaction=True)
def test_the_import_takes_the_dry_runs_file_and_its_terminate_deletes_it(api, chunks):
    checked = start(api, csv_text(people(5)), dry_run="true", strict="true")
    worker.work_operation(checked)
    name = Operation.objects.get(pk=checked).file.name
    imported_by = import_of(api, checked)
    dry, op = Operation.objects.get(pk=checked), Operation.objects.get(pk=imported_by)
    assert (dry.file.name, op.file.name, op.file_sha256) == ("", name, dry.file_sha256)
    assert op.options == {"target": "contacts", "strict": True, "checked_by": checked}
    assert [e.detail for e in dry.events.all()][-1] == f"stored file handed to operation {imported_by}"
    request(api, "pause", imported_by)
    request(api, "terminate", imported_by)
    worker.work_operation(imported_by)
    assert Operation.objects.get(pk=imported_by).state == S.TERMINATED
    assert not storage.exists(name)
    assert not Contact.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_import_is_refused_unless_a_completed_dry_run_still_holds_its_file(api, chunks, user, other_user, settings):
    plain = start(api, csv_text(people(2)))
    worker.work_operation(plain)
    checked = start(api, csv_text(people(2)), dry_run="true")

    def refused(op_id: int, client=api, **body) -> tuple[int, str]:
        response = client.post(f"/api/operations/{op_id}/import/", body, format="json")
        return response.status_code, response.json()["message"]

    assert refused(plain) == (409, f"Operation {plain} is not a dry run: only a dry run's file can be imported")
    assert refused(checked) == (409, "The dry run is queued: import it once it has completed")
    worker.work_operation(checked)
    assert refused(checked, token_client(other_user)) == (404, "Operation ID Invalid")
    assert refused(checked, strict=True)[0] == 400
    imported_by = import_of(api, checked)
    assert refused(checked) == (409, f"This dry run's file was imported already, by operation {imported_by}")

    expired = start(api, csv_text(people(2)), dry_run="true")
    worker.work_operation(expired)
    settings.LONG_TASK_RETENTION_DAYS = 1
    Operation.objects.filter(pk=expired).update(finished_at="2000-01-01T00:00:00Z")
    retention.sweep()
    assert refused(expired)[0] == 409 and "no longer stored" in refused(expired)[1]


@pytest.mark.django_db(transaction=True)
def test_terminating_a_paused_dry_run_deletes_its_verdicts_and_kept_keys(api, chunks):
    checked = start(api, csv_text(people(9) + people(2)), dry_run="true")
    chunks.after_chunk = lambda count: count == 2 and request(api, "pause", checked)
    worker.work_operation(checked)
    assert Operation.objects.get(pk=checked).state == S.PAUSED
    assert DryRunKey.objects.filter(operation_id=checked).count() == 6
    request(api, "terminate", checked)
    worker.work_operation(checked)
    assert Operation.objects.get(pk=checked).state == S.TERMINATED
    assert not DryRunKey.objects.filter(operation_id=checked).exists()
    assert not RowError.objects.filter(operation_id=checked).exists()
    assert not Contact.objects.exists()
    assert status(api, checked)["dry_run"]["rejected_by_reason"] == {}


@pytest.mark.django_db
def test_the_schema_documents_the_register_options_and_the_import(api):
    schema = api.get("/api/schema/", {"format": "json"}).json()
    register = schema["components"]["schemas"]["Register"]["properties"]
    assert {"target", "mapping", "strict", "dry_run"} <= set(register)
    assert "post" in schema["paths"]["/api/operations/{id}/import/"]
    assert "dry_run" in schema["components"]["schemas"]["Operation"]["properties"]


@pytest.mark.parametrize(
    "reason, kind",
    [
        ('score: "abc" is not an integer', "score is not an integer"),
        (
            'signup_date: "x" is not a date (YYYY-MM-DD); score: "y" is not an integer',
            "signup_date is not a date (YYYY-MM-DD)",
        ),
        ('E-mail: "a\\"b; c@x" is already in line 12 of this file', "E-mail is already in this file"),
        ('email: "ann@example.com" is already in the table', "email is already in the table"),
        ("expected 6 fields, found 2", "expected 6 fields, found 2"),
    ],
)
def test_a_reason_is_counted_by_its_kind_without_its_values(reason, kind):
    assert reason_kind(reason) == kind


@pytest.mark.django_db(transaction=True)
def test_the_import_of_a_dry_run_whose_file_came_as_a_resumable_upload_names_no_upload(api, chunks):
    content = b"a,b\n1,2\n3\n4,5\n"
    url = tc.created(api, len(content))
    tc.send(api, url, content, piece_bytes=5)
    registered = api.post("/register/", {"op_type": "Upload", "dry_run": True, "upload": url}, format="json")
    checked = registered.json()["op_id"]
    assert api.post(f"/api/operations/{checked}/start/", {"upload": url}, format="json").status_code == 202
    worker.work_operation(checked)
    imported_by = import_of(api, checked)
    assert "upload" not in Operation.objects.get(pk=imported_by).options
    assert "upload" not in status(api, imported_by)
    worker.work_operation(imported_by)
    assert list(UploadedRow.objects.filter(operation_id=imported_by).values_list("line_number", flat=True)) == [1, 3]
