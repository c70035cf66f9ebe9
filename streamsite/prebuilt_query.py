"""Querysets built once and run many times, for hot reads that cost more to build than to run.

Django builds a queryset anew on every call: each ``filter`` and ``annotate`` clones the
query and resolves its expressions, subqueries and their ``OuterRef``\\s again. For
``chat.selectors.unread_by_room`` (two correlated subqueries per room) that was 2.1 ms of
Python a call, against 0.1 ms to compile the SQL and 0.6 ms for PostgreSQL to run it
(docs/benchmarks.md, "SSE connects"). Every notification stream runs it when it
connects, on the database threads that share the GIL with the event loop: it was a fifth
of the GIL's time while 4,000 streams connected.

``PrebuiltQuery(build)`` calls ``build`` once (on first use) with a stand-in for each
value (``build(user_id=SENTINELS[0], ...)``: the names are the first call's), compiles
it, and notes where each stand-in is among the SQL's parameters; each call then runs that
SQL with the caller's values there and returns the rows as tuples, each column through
the converters Django's compiler would apply (counts to ``int``, JSON, SQLite's dates);
``count=True`` runs ``SELECT COUNT(*)`` over it instead. That is only the same as running
``build(**values)`` when each value is nothing but a parameter (it shapes no SQL): the
build refuses a queryset whose parameters do not hold every one of them, and a call with
other names than the first's.
``tests/test_prebuilt_query.py`` holds the two to the same answers on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from django.db import connections
from django.db.models import QuerySet

#: Stand for the callers' values while a query is built: ids no row has, within the range
#: of a 32-bit integer column (PostgreSQL treats a value outside it as matching nothing and
#: leaves it out of the SQL), one per value, by name in sorted order.
SENTINELS = tuple(-1_934_570_117 - 2 * i for i in range(8))


class PrebuiltQuery:
    """``build(**values)``'s rows for any values, built once (see the module docstring)."""

    def __init__(self, build: Callable[..., QuerySet], *, count: bool = False) -> None:
        self._build = build
        self._count = count
        self._compiled: _Compiled | None = None

    def rows(self, **values: int) -> list[tuple]:
        """The rows ``build(**values)`` would return, as tuples (``count``: one, its count)."""
        compiled = self._compiled
        if compiled is None:  # two threads may both build it: the same result
            compiled = self._compiled = self._compile(sorted(values))
        if compiled.names != values.keys():
            raise TypeError(f"expected the values {sorted(compiled.names)}, got {sorted(values)}")
        params = list(compiled.params)
        for name, places in compiled.places:
            for place in places:
                params[place] = values[name]
        connection = connections[compiled.alias]
        with connection.cursor() as cursor:
            cursor.execute(compiled.sql, params)
            rows = cursor.fetchall()
        if not compiled.converters:
            return [tuple(row) for row in rows]
        return [_converted(row, compiled.converters, connection) for row in rows]

    def count(self, **values: int) -> int:
        """``build(**values).count()``, for a query made with ``count=True``."""
        if not self._count:
            raise TypeError("this query was not prebuilt as a count (count=True)")
        return self.rows(**values)[0][0]

    def _compile(self, names: list[str]) -> _Compiled:
        if len(names) > len(SENTINELS):
            raise ValueError(f"at most {len(SENTINELS)} values")
        stand_ins = dict(zip(names, SENTINELS, strict=False))
        queryset = self._build(**stand_ins)
        alias = queryset.db
        compiler = queryset.query.get_compiler(using=alias)
        sql, params = compiler.as_sql()
        places = []
        for name, stand_in in stand_ins.items():
            found = tuple(i for i, param in enumerate(params) if _is(param, stand_in))
            if not found:
                raise ValueError(f"the built query does not take {name!r} as a parameter")
            places.append((name, found))
        if self._count:
            sql = f"SELECT COUNT(*) FROM ({sql}) prebuilt_count"  # noqa: S608 (no user text)
            converters = []
        else:
            selected = [column for column, _sql, _alias in compiler.select]
            converters = list(compiler.get_converters(selected).items())
        return _Compiled(alias, sql, tuple(params), frozenset(names), tuple(places), converters)


class _Compiled(NamedTuple):
    alias: str
    sql: str
    params: tuple
    names: frozenset[str]
    places: tuple[tuple[str, tuple[int, ...]], ...]  # where each value goes among ``params``
    converters: list  # (column, (converters, expression)), as Django's compiler has them


def _converted(row, converters: list, connection) -> tuple:
    """``SQLCompiler.apply_converters`` for one row, with this thread's connection."""
    row = list(row)
    for column, (column_converters, expression) in converters:
        value = row[column]
        for converter in column_converters:
            value = converter(value, expression, connection)
        row[column] = value
    return tuple(row)


def _is(param, stand_in: int) -> bool:
    return type(param) is int and param == stand_in
