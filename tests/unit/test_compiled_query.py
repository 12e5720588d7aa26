"""CompiledQuery: the same instances as the ORM's, with the SQL built once per process."""

import hashlib
import inspect
import threading
from unittest import mock

import pytest
from django.db import connection
from django.db.models import Model
from django.db.models.query import get_related_populators
from django.db.models.sql.compiler import SQLCompiler
from django.test.utils import CaptureQueriesContext
from django.utils.module_loading import import_string
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
def test_the_sql_is_built_once_per_process(in_state):
    first, second = in_state(S.PAUSED), in_state(S.QUEUED)
    by_id = CompiledQuery(lambda op_id: Operation.objects.filter(pk=op_id))
    with mock.patch.object(SQLCompiler, "as_sql", autospec=True, side_effect=SQLCompiler.as_sql) as as_sql:
        assert by_id.first(first.pk).state == S.PAUSED
        assert by_id.first(second.pk).state == S.QUEUED
        assert by_id.first(first.pk).state == S.PAUSED
        assert as_sql.call_count == 1

        # Another thread, as each ASGI request is, on a connection of its own (the one it was
        # built on closed meanwhile): the same SQL and converters serve it.
        connection.close()
        seen = []

        def read_in_a_thread():
            try:
                read = by_id.first(second.pk)
                seen.append((read.state, read.updated_at.tzinfo is not None))
            finally:
                connection.close()

        thread = threading.Thread(target=read_in_a_thread)
        thread.start()
        thread.join()
    assert seen == [(S.QUEUED, True)]
    assert as_sql.call_count == 1


def test_a_query_it_cannot_compile_is_refused():
    from django.db.models import Count

    with pytest.raises(ValueError, match="model fields only"):
        CompiledQuery(lambda op_id: Operation.objects.annotate(n=Count("events")).filter(pk=op_id)).first(1)
    with pytest.raises(ValueError, match="once among the parameters"):
        CompiledQuery(lambda op_id: Operation.objects.filter(pk=op_id, lines_finished=op_id)).first(1)


# What ModelIterable does with a row, as CompiledQuery repeats it, in the Django this was checked
# against. CompiledQuery is a private API kept for its figure (docs/performance.md, "Private APIs
# kept"): when an upgrade changes one of these, compare CompiledQuery with the new ModelIterable,
# re-measure, and then update the fingerprints (or drop CompiledQuery for the plain ORM).
DJANGO_INTERNALS = {
    "django.db.models.query.ModelIterable.__iter__": "c2a744b8c18e0b4a5b85d9b644e8fff74ed239e168f4eda77be0ba5fc5e9cee9",
    "django.db.models.sql.compiler.SQLCompiler.results_iter": (
        "d279d61b80a3a1158af6029d13d8410a7aa2a2ab25b67929dda125a6fd459313"
    ),
    "django.db.models.query.get_related_populators": "979430eb75b93969bf0a60d236ea2f7d8748c0931e9104b29804ec7a1c0dab43",
    "django.db.models.query.RelatedPopulator.__init__": (
        "211f3bd0dfdc3a3b281bc438f6a540ac8dd92045643ba88c312293c15ce5328a"
    ),
    "django.db.models.query.RelatedPopulator.populate": (
        "c939cb628b0376fe22af9560079be71075684084e6312e39d422a66ee7b7eebe"
    ),
}


@pytest.mark.parametrize("name", list(DJANGO_INTERNALS))
def test_the_django_internals_it_repeats_have_not_changed(name):
    module, _, attribute = name.rpartition(".")
    source = inspect.getsource(getattr(import_string(module), attribute))
    assert hashlib.sha256(source.encode()).hexdigest() == DJANGO_INTERNALS[name], (
        f"Django changed {name}, which operations/compiled_query.py repeats: check it against the new code"
    )


def test_the_django_internals_it_reads_have_the_shape_it_expects(user):
    assert str(inspect.signature(get_related_populators)) == "(klass_info, select, db)"
    assert str(inspect.signature(SQLCompiler.get_converters)) == "(self, expressions)"
    assert str(inspect.signature(SQLCompiler.apply_converters)) == "(self, rows, converters)"
    assert str(inspect.signature(Model.from_db)) == "(db, field_names, values)"
    query = Token.objects.select_related("user").filter(key="k")[:1].query
    assert query.annotations == {} and query.extra == {}
    compiler = query.get_compiler(using="default")
    sql, params = compiler.as_sql()
    assert isinstance(sql, str) and "k" in params
    assert set(compiler.klass_info) == {"model", "select_fields", "related_klass_infos"}
    assert compiler.klass_info["model"] is Token and compiler.col_count == len(compiler.select)
    assert compiler.select[0][0].target.attname == "key"
