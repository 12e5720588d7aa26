"""Polling that costs nothing (SPEC §6): the status carries an ETag (If-None-Match → 304 after
one read), and `wait_for_change` answers as soon as the status changes (PostgreSQL: LISTEN/
NOTIFY from a trigger; SQLite: a cheap poll)."""

import threading
import time

import pytest
from django.db import connection
from django.db.models.sql.compiler import SQLCompiler
from django.test.utils import CaptureQueriesContext

from operations import services
from operations.models import Operation
from operations.state_machine import Actor

S = Operation.State


@pytest.fixture
def running(user, in_state) -> Operation:
    return in_state(S.RUNNING, owner=user, file_size=100, position=10, lines_finished=1)


URLS = {
    "seed": lambda op_id, extra="": f"/get_status/?op_id={op_id}{extra}",
    "detail": lambda op_id, extra="": f"/api/operations/{op_id}/?{extra.lstrip('&')}",
}


@pytest.mark.django_db
@pytest.mark.parametrize("endpoint", list(URLS))
def test_an_unchanged_status_is_a_304_after_one_read_of_the_operation(api, running, endpoint):
    url = URLS[endpoint](running.pk)
    first = api.get(url)
    etag = first["ETag"]
    assert first.status_code == 200 and etag.startswith('"')

    with CaptureQueriesContext(connection) as captured:
        again = api.get(url, HTTP_IF_NONE_MATCH=etag)
    assert again.status_code == 304 and again.content == b"" and again["ETag"] == etag
    operation_reads = [q for q in captured if "operations_operation" in q["sql"]]
    assert len(operation_reads) == 1 and len(captured) == 2  # the token, the operation

    Operation.objects.filter(pk=running.pk).update(lines_finished=2, position=20)
    running.refresh_from_db()
    running.save(update_fields=["updated_at"])
    changed = api.get(url, HTTP_IF_NONE_MATCH=etag)
    assert changed.status_code == 200 and changed["ETag"] != etag
    assert changed.json()["lines_finished"] == 2


def change_soon(op: Operation, *, after: float) -> threading.Thread:
    def pause():
        time.sleep(after)
        services.operation_pause(op_id=op.pk, actor=Actor("system"))
        connection.close()

    thread = threading.Thread(target=pause)
    thread.start()
    return thread


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("endpoint", list(URLS))
def test_wait_for_change_answers_as_soon_as_the_status_changes(api, running, endpoint):
    etag = api.get(URLS[endpoint](running.pk))["ETag"]
    thread = change_soon(running, after=0.3)
    started = time.monotonic()
    response = api.get(URLS[endpoint](running.pk, "&wait_for_change=8"), HTTP_IF_NONE_MATCH=etag)
    waited = time.monotonic() - started
    thread.join()
    assert response.status_code == 200 and response.json()["state"] == S.PAUSING
    assert 0.25 < waited < 3.0, f"answered after {waited:.2f}s"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("endpoint", list(URLS))
def test_a_long_poll_reads_the_operation_again_without_building_sql(api, running, endpoint, monkeypatch):
    """What a follower's request costs over a plain status request is its reads of the row
    while it waits: compiled once (operations/compiled_query.py), not built by the ORM each time."""
    etag = api.get(URLS[endpoint](running.pk))["ETag"]  # the compiled reads, compiled
    this_thread, built, as_sql = threading.get_ident(), [], SQLCompiler.as_sql

    def counted_as_sql(compiler, *args, **kwargs):
        if threading.get_ident() == this_thread:
            built.append(compiler.query.model)
        return as_sql(compiler, *args, **kwargs)

    monkeypatch.setattr(SQLCompiler, "as_sql", counted_as_sql)
    thread = change_soon(running, after=0.3)
    response = api.get(URLS[endpoint](running.pk, "&wait_for_change=8"), HTTP_IF_NONE_MATCH=etag)
    thread.join()
    assert response.status_code == 200 and response.json()["state"] == S.PAUSING
    assert built == []


@pytest.mark.django_db(transaction=True)
def test_an_operation_deleted_during_a_long_poll_is_not_found(api, running):
    etag = api.get(URLS["detail"](running.pk))["ETag"]

    def delete():
        time.sleep(0.3)
        Operation.objects.filter(pk=running.pk).delete()
        connection.close()

    thread = threading.Thread(target=delete)
    thread.start()
    response = api.get(URLS["detail"](running.pk, "&wait_for_change=1"), HTTP_IF_NONE_MATCH=etag)
    thread.join()
    assert response.status_code == 404


@pytest.mark.django_db(transaction=True)
def test_wait_for_change_without_a_change_waits_its_time_and_no_longer(api, running, settings):
    settings.LONG_TASK_MAX_WAIT_SECONDS = 0.6
    etag = api.get(URLS["seed"](running.pk))["ETag"]
    started = time.monotonic()
    response = api.get(URLS["seed"](running.pk, "&wait_for_change=30"), HTTP_IF_NONE_MATCH=etag)
    waited = time.monotonic() - started
    assert response.status_code == 304
    assert 0.55 < waited < 2.0
    response = api.post("/get_status/", {"op_id": running.pk, "wait_for_change": 0.2}, format="json")
    assert response.status_code == 200  # no If-None-Match: the status as it is when the time is up


@pytest.mark.django_db
def test_wait_for_change_is_a_number_of_seconds(api, running):
    response = api.get(URLS["detail"](running.pk, "&wait_for_change=soon"))
    assert response.status_code == 400
    assert response.json() == {"message": "wait_for_change must be a number of seconds"}
