"""Imports into a target's own table (SPEC §13), run by the real worker loop in-process.

Each test registers an Upload with `target=contacts`, starts it through the API, then calls
`worker.work_operation` here; `chunks` fixes the chunk size so that small files take many
chunks. Expected rows and row errors are written beside each file, line by line.
"""

import csv
import datetime
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
    chunks.size = size
    op_id = start(api, csv_text(people(10)))
    worker.work_operation(op_id)
    op = Operation.objects.get(pk=op_id)
    assert (op.state, op.lines_finished, op.lines_failed) == (S.COMPLETED, 10, 0)
    rows = imported(op_id)
    assert [row[0] for row in rows] == list(range(1, 11))
    assert rows[6] == (7, "person 7", "p7@example.com", "+33 7", "Paris", datetime.date(2024, 1, 8), 7)
    assert not RowError.objects.filter(operation_id=op_id).exists()


# --- row errors -----------------------------------------------------------------------------

LONG_NAME = "n" * 101
# (row, the reason of its row error, or None: stored)
MIXED = [
    (["Ann", "ann@example.com", "", "", "2024-03-01", "10"], None),
    (["Bob", "bob@example.com", "", "", "", "abc"], 'score: "abc" is not an integer'),
    (["", "cy@example.com", "", "", "", ""], 'name: "" is required'),
    (["Dan", "not-an-email", "", "", "", ""], 'email: "not-an-email" is not valid: Enter a valid email address.'),
    (["Eve", "eve@example.com", "", "", "2024-02-30", ""], 'signup_date: "2024-02-30" is not a date (YYYY-MM-DD)'),
    ([LONG_NAME, "", "", "", "", ""], f'name: "{"n" * 60}…" is longer than 100 characters'),
    (["Ann again", "ann@example.com", "", "", "", ""], 'email: "ann@example.com" is already in line 1 of this file'),
    (["No mail 1", "", "", "Lyon", "", " 7 "], None),
    (["No mail 2", "", "", "Lyon", "", ""], None),
    (["Fay", "fay@example.com", "", "", "someday", "x"], 'score: "x" is not an integer'),
    (["Gus", "gus@example.com", "", "", "", "99999999999999999999"], 'score: "99999999999999999999" is out of range'),
    (["Hal", "hal@example.com", "555\t1", "Nice\\n", "2024-12-31", "-3"], None),
]
MIXED[9] = (MIXED[9][0], 'signup_date: "someday" is not a date (YYYY-MM-DD); score: "x" is not an integer')


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("size", [1, 3, 100])
def test_a_bad_cell_or_a_duplicate_key_is_a_row_error_and_the_import_goes_on(api, chunks, size):
    chunks.size = size
    content = csv_text([row for row, _ in MIXED]) + b"short,row\n"
    op_id = start(api, content)
    worker.work_operation(op_id)
    op = Operation.objects.get(pk=op_id)
    bad = [(line, reason) for line, (_, reason) in enumerate(MIXED, 1) if reason]
    assert (op.state, op.lines_finished, op.lines_failed) == (S.COMPLETED, len(MIXED) + 1, len(bad) + 1)
    found = errors(op_id)
    assert [line for line, _ in found] == [line for line, _ in bad] + [len(MIXED) + 1]
    for (_, reason), (_, expected) in zip(found, bad, strict=False):
        assert reason.startswith(expected), (reason, expected)
    assert found[-1][1] == "expected 6 fields, found 2"
    # Stored whole or not at all: the good rows, with their typed values.
    assert [row[0] for row in imported(op_id)] == [line for line, (_, r) in enumerate(MIXED, 1) if r is None]
    by_line = {row[0]: row for row in imported(op_id)}
    assert by_line[1] == (1, "Ann", "ann@example.com", "", "", datetime.date(2024, 3, 1), 10)
    assert by_line[8][2:] == (None, "", "Lyon", None, 7)  # empty email: NULL, which collides with nothing
    assert by_line[12][3:] == ("555\t1", "Nice\\n", datetime.date(2024, 12, 31), -3)  # COPY's escapes are ours
    raw = RowError.objects.get(operation_id=op_id, line_number=2).raw
    assert raw == "Bob,bob@example.com,,,,abc"


@pytest.mark.django_db(transaction=True)
def test_a_key_already_in_the_table_is_a_row_error_and_the_row_stays_as_it_was(api, chunks):
    mine = Contact.objects.create(name="Mine", email="p2@example.com", score=1)
    other = start(api, csv_text(people(2, start=5)))
    worker.work_operation(other)
    op_id = start(api, csv_text(people(6)))
    worker.work_operation(op_id)
    assert [line for line, *_ in imported(op_id)] == [1, 3, 4]
    assert errors(op_id) == [
        (2, 'email: "p2@example.com" is already in the table'),
        (5, 'email: "p5@example.com" is already in the table'),
        (6, 'email: "p6@example.com" is already in the table'),
    ]
    mine.refresh_from_db()
    assert (mine.name, mine.score, mine.import_operation) == ("Mine", 1, None)
    assert [row[1] for row in imported(other)] == ["person 5", "person 6"]


# --- strict --------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "bad, message",
    [
        (["person 5", "p5@example.com", "", "", "", "abc"], 'line 5, score: "abc" is not an integer'),
        (
            ["person 5", "p2@example.com", "", "", "", ""],
            'line 5, email: "p2@example.com" is already in line 2 of this file',
        ),
    ],
    ids=["a bad cell", "a duplicate key"],
)
def test_strict_fails_at_the_first_bad_row_with_nothing_of_its_chunk_stored(api, chunks, bad, message):
    rows = people(9)
    rows[4] = bad
    op_id = start(api, csv_text(rows), strict="true")
    worker.work_operation(op_id)
    op = Operation.objects.get(pk=op_id)
    assert (op.state, op.error, op.lines_finished, op.lines_failed) == (S.FAILED, message, 3, 0)
    assert [row[0] for row in imported(op_id)] == [1, 2, 3]
    assert errors(op_id) == []
    # Resumed without strict, the chunk is read again and the bad row is a row error.
    response = api.post("/resume/", {"op_id": op_id, "strict": "false"}, format="json")
    assert response.status_code == 202, response.content
    worker.work_operation(op_id)
    op = Operation.objects.get(pk=op_id)
    assert (op.state, op.lines_finished, op.lines_failed) == (S.COMPLETED, 9, 1)
    assert [row[0] for row in imported(op_id)] == [1, 2, 3, 4, 6, 7, 8, 9]
    assert [line for line, _ in errors(op_id)] == [5]


# --- the header -----------------------------------------------------------------------------


def refused_start(api, content: bytes, **options) -> str:
    op_id = register_target(api, **options)
    response = api.post("/upload/", {"op_id": op_id, "file": upload_file(content)})
    assert response.status_code == 400, response.content
    assert Operation.objects.get(pk=op_id).state == S.REGISTERED
    return response.json()["message"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "header, options, message",
    [
        (["email", "city"], {}, "missing required columns: name"),
        (["name", "email", "nickname"], {"strict": "true"}, "unknown columns (strict): nickname"),
        (["name", "Email", "E Mail", "e_mail"], {}, 'duplicate column "E Mail" (columns 2 and 3)'),
        (["Name", "Full name"], {"mapping": {"Full name": "name"}}, None),
        (["Full name", "Name"], {"mapping": {"Full name": "name"}, "strict": "true"}, "unknown columns (strict): Name"),
        (["name", "points"], {"mapping": {"score": "score"}}, "mapping names columns the file does not have: score"),
        (["who", "points"], {"mapping": {"who": "name", "points": "score", "x": None}}, "mapping names columns"),
        (
            ["name", "alias"],
            {"mapping": {"name": "name", "alias": "name"}},
            'columns "name" and "alias" both fill field name',
        ),
    ],
)
def test_the_header_is_checked_at_upload(api, header, options, message):
    content = csv_text([["a"] * len(header)], header=header)
    if message is None:
        op_id = register_target(api, **options)
        response = api.post("/upload/", {"op_id": op_id, "file": upload_file(content)})
        assert response.status_code == 202, response.content
        return
    got = refused_start(api, content, **options)
    assert got.startswith("The header does not fit target contacts: ") and message in got, got


@pytest.mark.django_db
def test_every_header_problem_is_named_at_once(api):
    content = csv_text([["a"] * 3], header=["Email", "e-mail", "nick"])
    message = refused_start(api, content, strict="true")
    assert message == (
        'The header does not fit target contacts: duplicate column "e-mail" (columns 1 and 2); '
        "missing required columns: name; unknown columns (strict): nick"
    )
    # The same name twice is refused by the reading itself, for any Upload.
    assert (
        refused_start(api, csv_text([], header=["name", "email", "email"])) == "The header names column 'email' twice"
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body, message",
    [
        ({"target": "nobody"}, "Unknown target 'nobody'. Known targets: contacts"),
        ({"target": "contacts", "mapping": "{not json"}, "mapping must be a JSON object of CSV columns to fields"),
        ({"target": "contacts", "mapping": '["name"]'}, "mapping must be a JSON object of CSV columns to fields"),
        ({"target": "contacts", "mapping": '{"a": 1}'}, "mapping must be a JSON object of CSV columns to fields"),
        (
            {"target": "contacts", "mapping": '{"a": "nickname"}'},
            "mapping names fields that target contacts does not have: nickname",
        ),
        ({"mapping": '{"a": "name"}'}, "mapping goes with target"),
    ],
)
def test_registration_refuses_a_bad_target_or_mapping(api, body, message):
    response = api.post("/register/", {"op_type": "Upload", **body}, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["message"].startswith(message), response.json()
    assert not Operation.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_without_a_target_an_upload_still_goes_to_uploaded_rows(api, start_upload, chunks):
    from operations.models import UploadedRow

    op_id = start_upload(csv_text(people(3)))
    worker.work_operation(op_id)
    assert UploadedRow.objects.filter(operation_id=op_id).count() == 3
    assert not Contact.objects.exists()


# --- pause, resume, terminate ---------------------------------------------------------------


def request(api, verb: str, op_id: int, **body) -> dict:
    response = api.post(f"/{verb}/", {"op_id": op_id, **body}, format="json")
    assert response.status_code in (200, 202), response.content
    return response.json()


@pytest.mark.django_db(transaction=True)
def test_pausing_after_every_chunk_and_resuming_gives_the_uninterrupted_result(api, chunks):
    rows = [row for row, _ in MIXED] * 2  # the second half's keys collide with the first's
    reference = start(api, csv_text(rows))
    worker.work_operation(reference)
    expected_rows = [row[0] for row in imported(reference)]
    expected_errors = errors(reference)
    Contact.objects.filter(import_operation=reference).delete()

    op_id = start(api, csv_text(rows))
    chunks.after_chunk = lambda count: request(api, "pause", op_id)
    pauses = 0
    while Operation.objects.get(pk=op_id).state != S.COMPLETED:
        worker.work_operation(op_id)
        op = Operation.objects.get(pk=op_id)
        if op.state == S.PAUSED:
            pauses += 1
            assert [row[0] for row in imported(op_id)] == [line for line in expected_rows if line <= op.lines_finished]
            request(api, "resume", op_id)
        assert pauses < 100
    assert pauses >= len(rows) // chunks.size - 1
    assert [row[0] for row in imported(op_id)] == expected_rows
    assert errors(op_id) == expected_errors


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("pause_after", [1, 3])
def test_terminate_deletes_exactly_the_operations_rows(api, chunks, settings, pause_after):
    settings.LONG_TASK_ROLLBACK_CHUNK_ROWS = 2  # a rollback of many chunks
    mine = Contact.objects.create(name="Mine", email="mine@example.com")
    other = start(api, csv_text(people(3, start=100)))
    worker.work_operation(other)
    before = sorted(Contact.objects.values_list("id", "name", "email", "import_operation", "import_line"))

    op_id = start(api, csv_text(people(10)))
    chunks.count = 0
    chunks.after_chunk = lambda count: count == pause_after and request(api, "pause", op_id)
    worker.work_operation(op_id)
    assert Operation.objects.get(pk=op_id).state == S.PAUSED
    assert len(imported(op_id)) == pause_after * chunks.size
    request(api, "terminate", op_id)
    worker.work_operation(op_id)
    op = Operation.objects.get(pk=op_id)
    assert (op.state, op.lines_finished) == (S.TERMINATED, 0)
    assert sorted(Contact.objects.values_list("id", "name", "email", "import_operation", "import_line")) == before
    assert Contact.objects.get(pk=mine.pk).import_operation is None


# --- read back ------------------------------------------------------------------------------

MAPPED_HEADER = ["Full Name", "E-mail", "Points", "Notes", "Signup Date"]


@pytest.fixture
def mapped_import(api, chunks):
    rows = [
        ["Ann", "ann@example.com", "10", "n1", "2024-03-01"],
        ["Bob", "bob@example.com", "x", "n2", ""],
        ["Cy, Jr.", "", "", "n3", "2023-12-31"],
    ]
    op_id = start(api, csv_text(rows, header=MAPPED_HEADER), mapping={"Full Name": "name", "Points": "score"})
    worker.work_operation(op_id)
    return op_id


@pytest.mark.django_db(transaction=True)
def test_rows_read_back_typed_under_the_mapped_header(api, mapped_import):
    op_id = mapped_import
    response = api.get(f"/api/operations/{op_id}/rows/")
    assert response.status_code == 200
    assert response.json()["results"] == [
        {
            "line_number": 1,
            "data": {"Full Name": "Ann", "E-mail": "ann@example.com", "Points": 10, "Signup Date": "2024-03-01"},
        },
        {
            "line_number": 3,
            "data": {"Full Name": "Cy, Jr.", "E-mail": None, "Points": None, "Signup Date": "2023-12-31"},
        },
    ]
    lines = b"".join(api.get(f"/api/operations/{op_id}/rows/?format=jsonl").streaming_content).decode().splitlines()
    assert [json.loads(line) for line in lines] == response.json()["results"]
    assert '"Points": 10,' in lines[0]  # a number, not a string
    text = b"".join(api.get(f"/api/operations/{op_id}/rows/?format=csv").streaming_content).decode()
    assert text == 'Full Name,E-mail,Points,Signup Date\nAnn,ann@example.com,10,2024-03-01\n"Cy, Jr.",,,2023-12-31\n'
    page = api.get(f"/api/operations/{op_id}/rows/?after=1&limit=1").json()
    assert [row["line_number"] for row in page["results"]] == [3]


@pytest.mark.django_db(transaction=True)
def test_an_export_of_a_target_import_is_its_typed_rows(api, mapped_import):
    response = api.post("/register/", {"op_type": "Export", "source": mapped_import, "filter": '{"Points": "10"}'})
    assert response.status_code == 201, response.content
    op_id = response.json()["op_id"]
    assert api.post(f"/api/operations/{op_id}/start/").status_code == 202
    worker.work_operation(op_id)
    data = b"".join(api.get(f"/api/operations/{op_id}/download/").streaming_content)
    assert data == b"Full Name,E-mail,Points,Signup Date\nAnn,ann@example.com,10,2024-03-01\n"
