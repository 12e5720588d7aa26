"""Reads whose SQL is built once, for the requests every polling client makes.

Django builds a query's SQL anew on each evaluation, and for a one-row read by key that costs
more CPU than the database takes to answer. A status request makes two such reads (the token,
with its user, and the operation), and a long poll reads the operation again at every change.
A `CompiledQuery` builds its queryset's SQL once per process and database alias and then only
runs it with the new value, turning the row into model instances the way Django's ModelIterable
does (converters, `from_db`, select_related). Once per process, not per connection: under ASGI
each request has a thread and a connection of its own, so a cache per thread was never hit. What
is kept holds for every connection of the alias: the SQL, and converters that read only the
alias's settings (its time zone) of the connection they were made with, never the database.

That repeats Django internals (the compiler's klass_info, select and converters,
get_related_populators): a private API, kept because the status target shows what it buys
(docs/performance.md, "Private APIs kept"). tests/unit/test_compiled_query.py fails when Django
changes the code it repeats.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import connections
from django.db.models import Model, QuerySet
from django.db.models.query import get_related_populators

# The value the queryset is built with, found again among the SQL's parameters: a string no key
# is, an integer no primary key reaches.
_MARKERS = {str: "\x00compiled-query-marker\x00", int: -(2**62) + 12345}


@dataclass(frozen=True)
class _Compiled:
    sql: str
    params: tuple
    marker_at: int
    compiler: Any
    converters: dict
    init_list: list[str]
    model: type[Model]
    fields_end: int
    related_populators: list


class CompiledQuery:
    """The first row of `build(value)` (a queryset filtered on one value of type `kind`), or
    None. The queryset must select one model (select_related allowed; no annotations)."""

    def __init__(self, build: Callable[[Any], QuerySet], *, kind: type = int):
        self.build = build
        self.marker = _MARKERS[kind]
        self._compiled: dict[str, _Compiled] = {}  # by alias; two threads may both build it

    def first(self, value, *, using: str = "default") -> Model | None:
        compiled = self._compiled.get(using) or self._compile(using)
        params = list(compiled.params)
        params[compiled.marker_at] = value
        connection = connections[using]
        with connection.cursor() as cursor:
            cursor.execute(compiled.sql, params)
            row = cursor.fetchone()
        if row is None:
            return None
        if compiled.converters:
            row = next(iter(compiled.compiler.apply_converters([row], compiled.converters)))
        obj = compiled.model.from_db(using, compiled.init_list, row[: compiled.fields_end])
        for populator in compiled.related_populators:
            populator.populate(row, obj)
        return obj

    def _compile(self, using: str) -> _Compiled:
        queryset = self.build(self.marker)
        if queryset.query.annotations or queryset.query.extra:
            raise ValueError("a CompiledQuery selects model fields only")
        compiler = queryset[:1].query.get_compiler(using=using)
        sql, params = compiler.as_sql()
        matches = [at for at, param in enumerate(params) if param == self.marker]
        if len(matches) != 1:
            raise ValueError(f"the value must appear once among the parameters: {params}")
        klass_info = compiler.klass_info
        fields = klass_info["select_fields"]
        start, end = fields[0], fields[-1] + 1
        if start != 0:
            raise ValueError("a CompiledQuery selects model fields only")
        compiled = _Compiled(
            sql=sql,
            params=tuple(params),
            marker_at=matches[0],
            compiler=compiler,
            converters=compiler.get_converters([column[0] for column in compiler.select[: compiler.col_count]]),
            init_list=[column[0].target.attname for column in compiler.select[start:end]],
            model=klass_info["model"],
            fields_end=end,
            related_populators=get_related_populators(klass_info, compiler.select, using),
        )
        self._compiled[using] = compiled
        return compiled
