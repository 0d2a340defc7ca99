"""One-statement writes on vinyl's compilers: INSERT, UPDATE (with multi-table parents), and
UPDATE … RETURNING, each maybe-async.

These are the query-running ends of Django's ``QuerySet._insert()``, ``SQLUpdateCompiler.
execute_sql()`` and ``QuerySet._update()``; the model layer's writes, save chain and deletion
share them.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import EmptyResultSet
from django.db.models import sql
from django.db.models.query import QuerySet
from django.db.models.sql.constants import ROW_COUNT

from ..compat import mirrors
from ..db.connection import ALL_ROWS, prepare, run
from ..db.transaction import in_atomic
from ..futures import maybe_async
from . import querycache
from .compilers import compiler_of
from .replay import call_with_io

__all__ = ["insert_objs", "update_query", "update_returning"]


@mirrors("django.db.models.query:QuerySet._insert")
def insert_objs(
    model: Any,
    objs: list[Any],
    fields: list[Any],
    returning_fields: Any = None,
    raw: bool = False,
    using: str = "default",
    on_conflict: Any = None,
    update_fields: Any = None,
    unique_fields: Any = None,
) -> Any:
    """Django's ``QuerySet._insert()`` on vinyl's compiler; the RETURNING rows (maybe-async)."""
    query = sql.InsertQuery(
        model, on_conflict=on_conflict, update_fields=update_fields, unique_fields=unique_fields
    )
    query.insert_values(fields, objs, raw=raw)
    compiler = compiler_of(query, using)
    return compiler.vinyl_execute_sql(returning_fields)


def update_query(query: Any, using: str) -> Any:
    """Run an ``sql.UpdateQuery``; return the row count, as ``SQLUpdateCompiler.execute_sql``.

    With multi-table inheritance parents (related updates) the ids are selected first and each
    table updated, in one transaction (see _update_with_parents).
    """
    if query.related_updates:
        return in_atomic(using, _update_with_parents, query, using)
    compiler = compiler_of(query, using)
    return _row_count(compiler.vinyl_execute_sql(ROW_COUNT))


@mirrors("django.db.models.sql.compiler:SQLUpdateCompiler.execute_sql")
@maybe_async
def _update_with_parents(query: Any, using: str):
    # SQLUpdateCompiler.execute_sql() with related updates. Its as_sql() selects the ids to
    # update (pre_sql_setup), a query in the middle of compiling: compile every statement
    # through call_with_io (that SELECT runs there), then run them. Row counting as Django's.
    def compile_all() -> list[Any]:
        q = query.clone()
        statements = [_compiled(q.get_compiler(using))]  # sets q.related_ids
        statements.extend(_compiled(r.get_compiler(using)) for r in q.get_related_updates())
        return statements

    statements = yield call_with_io(compile_all)
    row_count = None
    is_empty = True
    for i, statement in enumerate(statements):
        if statement is None:
            continue
        count = yield run(using, statement[0], statement[1], ROW_COUNT)
        if i == 0 or (is_empty and count):  # the first statement that ran counts
            row_count, is_empty = count, False
    return row_count or 0


def _compiled(compiler: Any) -> tuple[str, Any] | None:
    try:
        sql_, params = compiler.as_sql()
    except EmptyResultSet:
        return None
    return (sql_, params) if sql_ else None


@maybe_async
def _row_count(value: Any):
    return (yield value) or 0


@mirrors("django.db.models.query:QuerySet._update")
@maybe_async
def update_returning(queryset: QuerySet, values: list[Any], returning_fields: Any = None):
    """Django's ``QuerySet._update(values, returning_fields)``, maybe-async.

    Without *returning_fields* the row count; with a list (Django 6.1's save path) one tuple of
    returned values per updated row, converted as Django's ``execute_returning_sql`` does.
    """
    if not returning_fields and getattr(queryset, "_vinyl_shape", None) is not None:
        # A recorded queryset (a save's ``filter(pk=…)``): from the query cache's template when
        # its shape repeats, its query never built.
        if queryset._vinyl_sliced():
            raise TypeError("Cannot update a query once a slice has been taken.")

        @maybe_async
        def miss():
            query = queryset.query.chain(sql.UpdateQuery)
            query.add_update_fields(values)
            query.annotations = {}  # so that they won't be present in subqueries
            return (yield update_query(query, queryset.db))

        rows = yield querycache.update_fields(queryset, values, miss)
        queryset._result_cache = None
        return rows if returning_fields is None else [()] * rows
    if queryset.query.is_sliced:
        raise TypeError("Cannot update a query once a slice has been taken.")
    using = queryset.db
    query = queryset.query.chain(sql.UpdateQuery)
    query.add_update_fields(values)
    query.annotations = {}  # so that they won't be present in subqueries
    queryset._result_cache = None
    if returning_fields is None:
        return (yield update_query(query, using))
    if query.related_updates:
        raise NotImplementedError(
            "Update returning is not implemented for queries with related updates."
        )
    if not returning_fields:
        return [()] * (yield update_query(query, using))
    yield prepare(using)
    compiler = compiler_of(query, using)
    compiler.returning_fields = returning_fields
    statement, params = compiler.as_sql()
    rows = yield run(using, statement, params, ALL_ROWS)
    db_table = query.get_meta().db_table
    converters = compiler.get_converters([f.get_col(db_table) for f in returning_fields])
    if converters:
        rows = compiler.apply_converters(rows, converters)
    return [tuple(row) for row in rows]
