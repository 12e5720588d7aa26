"""CompiledQuery: the same instances as the ORM's, with the SQL built once per thread."""

import threading
from unittest import mock

import pytest
from django.db import connection
from django.db.models.sql.compiler import SQLCompiler
from django.test.utils import CaptureQueriesContext
from rest_framework.authtoken.models import Token

from operations.compiled_query import CompiledQuery
from operations.models import Operation

S = Operation.State
pytestmark = pytest.mark.django_db


def _fields(obj) -> dict:
    return {field.attname: getattr(obj, field.attname) for field in type(obj)._meta.concrete_fields}


def test_an_operation_as_the_orm_reads_it(in_state, user):
    # JSON, datetimes, nulls and text: the converters of the database apply as in the ORM.
    op = in_state(S.RUNNING, owner=user, columns=["a", "ü"], rows_per_second=12.5, error="x\ny")
    by_id = CompiledQuery(lambda op_id: Operation.objects.filter(pk=op_id))
    read = by_id.first(op.pk)
    expected = Operation.objects.get(pk=op.pk)
    assert _fields(read) == _fields(expected)
    assert read.columns == ["a", "ü"] and read.updated_at.tzinfo is not None
    assert read._state.adding is False and read._state.db == "default"
    assert by_id.first(op.pk + 1000) is None


def test_select_related_fills_the_relation(user):
    token = Token.objects.create(user=user)
    by_key = CompiledQuery(lambda key: Token.objects.select_related("user").filter(key=key), kind=str)
    with CaptureQueriesContext(connection) as queries:
        read = by_key.first(token.key)
        assert read.user.username == "alice" and read.user.pk == user.pk
    assert len(queries) == 1  # the user came with the token
    assert read.key == token.key
    assert by_key.first("no such key") is None


@pytest.mark.django_db(transaction=True)  # the other thread's connection sees committed rows only
def test_the_sql_is_built_once_per_thread(in_state):
    first, second = in_state(S.PAUSED), in_state(S.QUEUED)
    by_id = CompiledQuery(lambda op_id: Operation.objects.filter(pk=op_id))
    with mock.patch.object(SQLCompiler, "as_sql", autospec=True, side_effect=SQLCompiler.as_sql) as as_sql:
        assert by_id.first(first.pk).state == S.PAUSED
        assert by_id.first(second.pk).state == S.QUEUED
        assert by_id.first(first.pk).state == S.PAUSED
    assert as_sql.call_count == 1

    # Another thread builds its own, for its own connection.
    seen = []

    def read_in_a_thread():
        try:
            seen.append(by_id.first(second.pk).state)
        finally:
            connection.close()

    thread = threading.Thread(target=read_in_a_thread)
    thread.start()
    thread.join()
    assert seen == [S.QUEUED]


def test_a_query_it_cannot_compile_is_refused():
    from django.db.models import Count

    with pytest.raises(ValueError, match="model fields only"):
        CompiledQuery(lambda op_id: Operation.objects.annotate(n=Count("events")).filter(pk=op_id)).first(1)
    with pytest.raises(ValueError, match="once among the parameters"):
        CompiledQuery(lambda op_id: Operation.objects.filter(pk=op_id, lines_finished=op_id)).first(1)
