"""Querysets built once and run many times, for hot reads that cost more to build than to run.

Django builds a queryset anew on every call: each ``filter`` and ``annotate`` clones the
query and resolves its expressions, subqueries and their ``OuterRef``\\s again. For
``chat.selectors.unread_by_room`` (two correlated subqueries per room) that was 2.1 ms of
Python a call, against 0.1 ms to compile the SQL and 0.6 ms for PostgreSQL to run it
(docs/benchmarks.md, "SSE connects"). Every notification stream runs it when it
connects, on the database threads that share the GIL with the event loop: it was a fifth
of the GIL's time while 4,000 streams connected.

``PrebuiltQuery(build)`` calls ``build(SENTINEL)`` once (on first use), compiles it, and
notes where ``SENTINEL`` is among the SQL's parameters; each call then runs that SQL with
the caller's value there and returns the rows as tuples, each column through the
converters Django's compiler would apply (counts to ``int``, JSON, SQLite's dates). That
is only the same as running ``build(value)`` when the value is nothing but a parameter (it
shapes no SQL): the build refuses a queryset whose parameters do not hold it.
``tests/test_prebuilt_query.py`` holds the two to the same answers on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from django.db import connections
from django.db.models import QuerySet

#: Stands for the caller's value while the query is built: an id no row has, within the
#: range of a 32-bit integer column (PostgreSQL treats a value outside it as matching nothing
#: and leaves it out of the SQL).
SENTINEL = -1_934_570_117


class PrebuiltQuery:
    """``build(value)``'s rows for any ``value``, built once (see the module docstring)."""

    def __init__(self, build: Callable[[int], QuerySet]) -> None:
        self._build = build
        self._compiled: _Compiled | None = None

    def rows(self, value: int) -> list[tuple]:
        """The rows ``build(value)`` would return, as tuples."""
        compiled = self._compiled
        if compiled is None:  # two threads may both build it: the same result
            compiled = self._compiled = _compile(self._build(SENTINEL))
        params = list(compiled.params)
        for place in compiled.places:
            params[place] = value
        connection = connections[compiled.alias]
        with connection.cursor() as cursor:
            cursor.execute(compiled.sql, params)
            rows = cursor.fetchall()
        if not compiled.converters:
            return [tuple(row) for row in rows]
        return [_converted(row, compiled.converters, connection) for row in rows]


class _Compiled(NamedTuple):
    alias: str
    sql: str
    params: tuple
    places: tuple[int, ...]  # where the value goes among ``params``
    converters: list  # (column, (converters, expression)), as Django's compiler has them


def _compile(queryset: QuerySet) -> _Compiled:
    alias = queryset.db
    compiler = queryset.query.get_compiler(using=alias)
    sql, params = compiler.as_sql()
    places = tuple(i for i, param in enumerate(params) if _is_sentinel(param))
    if not places:
        raise ValueError("the built query does not take the value as a parameter")
    converters = compiler.get_converters([column for column, _sql, _alias in compiler.select])
    return _Compiled(alias, sql, tuple(params), places, list(converters.items()))


def _converted(row, converters: list, connection) -> tuple:
    """``SQLCompiler.apply_converters`` for one row, with this thread's connection."""
    row = list(row)
    for column, (column_converters, expression) in converters:
        value = row[column]
        for converter in column_converters:
            value = converter(value, expression, connection)
        row[column] = value
    return tuple(row)


def _is_sentinel(param) -> bool:
    return type(param) is int and param == SENTINEL
