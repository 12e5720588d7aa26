"""Results out (SPEC §6): /api/operations/{id}/rows/ in keyset pages and as CSV / JSON-lines
streams, row errors as streams, owner only. The round trip through a real worker is in
tests/processes/test_results.py."""

import csv
import io
import json

import pytest
from rest_framework.test import APIClient

from operations import results
from operations.models import Operation, RowError, UploadedRow
from tests.support import token_client

S = Operation.State
COLUMNS = ["name", "note", "city"]


def make_operation(owner, *, lines: list[int], columns=COLUMNS, state=S.COMPLETED) -> Operation:
    """An operation with stored rows at `lines`; row n is {"name": "name<n>", ...}. The data's
    keys are stored in reverse order, as PostgreSQL's jsonb may return them."""
    op = Operation.objects.create(owner=owner, state=state, columns=columns, lines_finished=max(lines, default=0))
    UploadedRow.objects.bulk_create(
        UploadedRow(operation=op, line_number=n, data=dict(reversed(list(row_data(n, columns).items())))) for n in lines
    )
    return op


def row_data(n: int, columns=COLUMNS) -> dict:
    values = {"name": f"name{n}", "note": f'says "hi", {n}\nand more', "city": f"Zürich {n % 7}"}
    return {name: values.get(name, f"{name}{n}") for name in columns}


def rows_url(op_id: int) -> str:
    return f"/api/operations/{op_id}/rows/"


def body_of(response) -> str:
    return b"".join(response.streaming_content).decode()


# --- keyset pages -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_pages_follow_line_numbers_to_the_end(api, user):
    op = make_operation(user, lines=[1, 2, 4, 5, 6, 9])  # 3, 7 and 8 were rejected

    seen, url, pages = [], rows_url(op.pk) + "?limit=2", 0
    while url:
        response = api.get(url)
        assert response.status_code == 200, response.content
        body = response.json()
        assert set(body) == {"results", "next"}
        seen += body["results"]
        url, pages = body["next"], pages + 1
    assert pages == 3  # 2 + 2 + 2 rows: the last page knows it is the last
    assert [row["line_number"] for row in seen] == [1, 2, 4, 5, 6, 9]
    assert seen[2] == {"line_number": 4, "data": row_data(4)}
    assert list(seen[2]["data"]) == COLUMNS  # header order, whatever order the database kept


@pytest.mark.django_db
def test_next_is_a_url_with_after_and_the_same_limit(api, user):
    op = make_operation(user, lines=list(range(1, 8)))
    body = api.get(rows_url(op.pk), {"limit": 3, "after": 2}).json()
    assert [row["line_number"] for row in body["results"]] == [3, 4, 5]
    assert body["next"].startswith("http://testserver/api/operations/")
    assert "after=5" in body["next"] and "limit=3" in body["next"]
    assert api.get(rows_url(op.pk), {"after": 7}).json() == {"results": [], "next": None}


@pytest.mark.django_db
def test_default_page_is_a_hundred_rows(api, user):
    op = make_operation(user, lines=list(range(1, 151)))
    body = api.get(rows_url(op.pk)).json()
    assert len(body["results"]) == 100 and "after=100" in body["next"]


@pytest.mark.django_db
def test_a_deep_page_costs_the_queries_of_the_first(api, user, django_assert_num_queries):
    """Keyset: page 1 and page 1,000 are the same three queries (token, operation, one range of
    the primary key); no OFFSET walks the rows before the page."""
    op = make_operation(user, lines=list(range(1, 10_011)))

    with django_assert_num_queries(3) as first:
        page_1 = api.get(rows_url(op.pk), {"limit": 10}).json()
    with django_assert_num_queries(3) as deep:
        page_1000 = api.get(rows_url(op.pk), {"limit": 10, "after": 9_990}).json()

    assert [row["line_number"] for row in page_1["results"]] == list(range(1, 11))
    assert [row["line_number"] for row in page_1000["results"]] == list(range(9_991, 10_001))
    rows_sql = [
        query["sql"] for query in (*first.captured_queries, *deep.captured_queries) if "uploadedrow" in query["sql"]
    ]
    assert len(rows_sql) == 2
    for sql in rows_sql:
        assert "line_number >" in sql and "LIMIT" in sql.upper() and "OFFSET" not in sql.upper()


# --- streams ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_csv_streams_every_row_with_the_original_header(api, user, monkeypatch, django_assert_num_queries):
    monkeypatch.setattr(results, "STREAM_PAGE_LINES", 4)  # lines 1-10: pages of 4, 4, 2
    op = make_operation(user, lines=list(range(1, 11)))

    response = api.get(rows_url(op.pk), {"format": "csv"})
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == f'attachment; filename="operation-{op.pk}-rows.csv"'
    # The last line stored, then the rows, read a page at a time while streaming.
    with django_assert_num_queries(4) as queries:
        text = body_of(response)
    pages = [query["sql"] for query in queries.captured_queries][1:]
    assert all("line_number" in sql and "OFFSET" not in sql.upper() for sql in pages)
    parsed = list(csv.reader(io.StringIO(text)))
    assert parsed[0] == COLUMNS
    assert parsed[1:] == [[row_data(n)[name] for name in COLUMNS] for n in range(1, 11)]
    assert text.startswith("name,note,city\nname1,")


@pytest.mark.django_db
def test_a_csv_stream_deep_in_the_rows_costs_what_one_at_the_start_does(api, user, django_assert_num_queries):
    """The Export type's encoder pages by ranges of the primary key: page 1 and page 1,000 are
    the same two queries (the last line, one range); no OFFSET walks the rows before."""
    op = make_operation(user, lines=list(range(1, 10_011)))
    texts = []
    for after in (0, 9_990):
        response = api.get(rows_url(op.pk), {"format": "csv", "after": after, "limit": 10})
        with django_assert_num_queries(2):
            texts.append(body_of(response))
    for text, first in zip(texts, (1, 9_991), strict=True):
        rows = list(csv.reader(io.StringIO(text)))
        assert rows[0] == COLUMNS and [row[0] for row in rows[1:]] == [f"name{n}" for n in range(first, first + 10)]


@pytest.mark.django_db
def test_a_csv_stream_crosses_gaps_and_pages_up_to_its_limit(api, user, monkeypatch):
    monkeypatch.setattr(results, "STREAM_PAGE_LINES", 2)
    op = make_operation(user, lines=[1, 2, 4, 5, 6, 9])  # 3, 7 and 8 were rejected
    for params, names in [
        ({}, [1, 2, 4, 5, 6, 9]),
        ({"limit": 4}, [1, 2, 4, 5]),
        ({"after": 2, "limit": 2}, [4, 5]),
        ({"after": 6}, [9]),
        ({"after": 9}, []),
    ]:
        text = body_of(api.get(rows_url(op.pk), {"format": "csv", **params}))
        assert [row[0] for row in csv.reader(io.StringIO(text))] == ["name", *(f"name{n}" for n in names)], params


@pytest.mark.django_db
def test_csv_stream_pages_are_sized_by_bytes_not_only_by_lines(api, user, monkeypatch):
    """Review finding: pages of 20,000 line numbers, whatever a row weighs, made a page of rows
    of 1,000 wide columns some 200 MB in the web. After a small first page, the pages are sized
    from the bytes a line took."""
    monkeypatch.setattr(results, "STREAM_FIRST_PAGE_LINES", 3)
    monkeypatch.setattr(results, "STREAM_PAGE_BYTES", 300)
    op = make_operation(user, lines=list(range(1, 201)))  # ~40 bytes a row
    parts = list(api.get(rows_url(op.pk), {"format": "csv"}).streaming_content)
    assert len(parts[1]) < 200  # the first page: 3 lines
    assert max(len(part) for part in parts[2:]) < 2 * 300
    parsed = list(csv.reader(io.StringIO(b"".join(parts).decode())))
    assert parsed[1:] == [[row_data(n)[name] for name in COLUMNS] for n in range(1, 201)]


@pytest.mark.django_db
def test_jsonl_streams_every_row(api, user):
    op = make_operation(user, lines=[1, 3])
    response = api.get(rows_url(op.pk), {"format": "jsonl"})
    assert response["Content-Type"] == "application/x-ndjson; charset=utf-8"
    lines = body_of(response).splitlines()
    assert [json.loads(line) for line in lines] == [
        {"line_number": 1, "data": row_data(1)},
        {"line_number": 3, "data": row_data(3)},
    ]
    assert "Zürich" in lines[0]  # UTF-8, not \\u escapes


@pytest.mark.django_db
def test_a_stream_takes_after_and_limit(api, user):
    op = make_operation(user, lines=list(range(1, 21)))
    text = body_of(api.get(rows_url(op.pk), {"format": "csv", "after": 5, "limit": 3}))
    assert [row[0] for row in csv.reader(io.StringIO(text))] == ["name", "name6", "name7", "name8"]


@pytest.mark.django_db
def test_an_operation_without_rows(api, user, register):
    op = make_operation(user, lines=[])
    assert body_of(api.get(rows_url(op.pk), {"format": "csv"})) == "name,note,city\n"
    assert body_of(api.get(rows_url(op.pk), {"format": "jsonl"})) == ""
    registered = register()  # no header yet: nothing at all
    assert body_of(api.get(rows_url(registered), {"format": "csv"})) == ""
    assert api.get(rows_url(registered)).json() == {"results": [], "next": None}


@pytest.mark.django_db
def test_accept_header_does_not_refuse_a_download(api, user):
    op = make_operation(user, lines=[1])
    response = api.get(rows_url(op.pk), {"format": "csv"}, HTTP_ACCEPT="text/csv")
    assert response.status_code == 200 and body_of(response).startswith("name,note,city")


# --- row errors -------------------------------------------------------------------------------


@pytest.fixture
def op_with_errors(user):
    op = make_operation(user, lines=[1, 4])
    RowError.objects.create(operation=op, line_number=3, reason="expected 3 fields, found 4", raw='a,"b\nc",d,e')
    RowError.objects.create(operation=op, line_number=2, reason="expected 3 fields, found 1", raw="ö")
    return op


@pytest.mark.django_db
def test_row_errors_stream_as_csv_and_jsonl(api, op_with_errors):
    url = f"/api/operations/{op_with_errors.pk}/row-errors/"
    response = api.get(url, {"format": "csv"})
    assert response.status_code == 200 and response["Content-Type"] == "text/csv; charset=utf-8"
    assert list(csv.reader(io.StringIO(body_of(response)))) == [
        ["line_number", "reason", "raw"],
        ["2", "expected 3 fields, found 1", "ö"],
        ["3", "expected 3 fields, found 4", 'a,"b\nc",d,e'],
    ]
    lines = body_of(api.get(url, {"format": "jsonl"})).splitlines()
    assert json.loads(lines[1]) == {"line_number": 3, "reason": "expected 3 fields, found 4", "raw": 'a,"b\nc",d,e'}
    # Without a format: the paginated JSON list, as before.
    body = api.get(url).json()
    assert body["count"] == 2 and [e["line_number"] for e in body["results"]] == [2, 3]
    assert api.get(url, {"format": "json"}).json() == body


# --- refusals ---------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"after": "-1"}, "after must be a line number (0 or more)"),
        ({"after": "x"}, "after must be a line number (0 or more)"),
        ({"after": "1.5"}, "after must be a line number (0 or more)"),
        ({"after": "99999999999999999999"}, "after must be a line number (0 or more)"),
        ({"limit": "0"}, "limit must be an integer from 1 to 1000"),
        ({"limit": "1001"}, "limit must be an integer from 1 to 1000"),
        ({"limit": "ten"}, "limit must be an integer from 1 to 1000"),
        ({"format": "xml"}, "format must be one of: json, csv, jsonl"),
        ({"format": "api"}, "format must be one of: json, csv, jsonl"),
        ({"format": "csv", "limit": "0"}, "limit must be a positive integer"),
        ({"format": "csv", "after": "-3"}, "after must be a line number (0 or more)"),
    ],
)
def test_bad_parameters_are_a_400_with_a_message(api, user, params, message):
    op = make_operation(user, lines=[1])
    response = api.get(rows_url(op.pk), params)
    assert response.status_code == 400
    assert response.json() == {"message": message}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"format": "xml"}, "format must be one of: json, csv, jsonl"),
        ({"after": "3"}, "after and limit go with format=csv or format=jsonl; the JSON list is paged by page"),
        ({"format": "csv", "limit": "-1"}, "limit must be a positive integer"),
    ],
)
def test_bad_row_error_parameters_are_a_400(api, op_with_errors, params, message):
    response = api.get(f"/api/operations/{op_with_errors.pk}/row-errors/", params)
    assert response.status_code == 400
    assert response.json() == {"message": message}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("rows/", {}),
        ("rows/", {"format": "csv"}),
        ("rows/", {"format": "jsonl"}),
        ("row-errors/", {"format": "csv"}),
        ("row-errors/", {"format": "jsonl"}),
    ],
)
def test_another_users_operation_answers_like_a_missing_one(api, other_user, staff_user, path, params):
    op = make_operation(other_user, lines=[1, 2])
    response = api.get(f"/api/operations/{op.pk}/{path}", params)
    assert response.status_code == 404
    assert response.json() == {"message": "Operation ID Invalid"}
    assert api.get(f"/api/operations/{op.pk + 1000}/{path}", params).json() == {"message": "Operation ID Invalid"}
    assert token_client(staff_user).get(f"/api/operations/{op.pk}/{path}", params).status_code == 200
    assert token_client(other_user).get(f"/api/operations/{op.pk}/{path}", params).status_code == 200


@pytest.mark.django_db
def test_authentication_is_required(user):
    op = make_operation(user, lines=[1])
    response = APIClient().get(rows_url(op.pk), {"format": "csv"})
    assert response.status_code == 401
    assert response.json() == {"message": "Authentication credentials were not provided."}


@pytest.mark.django_db
def test_the_schema_documents_rows_and_row_error_streams(api):
    schema = json.loads(api.get("/api/schema/", {"format": "json"}).content)
    for path in ("/api/operations/{id}/rows/", "/api/operations/{id}/row-errors/"):
        get = schema["paths"][path]["get"]
        assert {"format", "after", "limit"} <= {p["name"] for p in get["parameters"]}
        assert {"200", "400", "404"} <= set(get["responses"])
        assert {"application/json", "text/csv", "application/x-ndjson"} <= set(get["responses"]["200"]["content"])
