"""Dual SQL compilers: Django generates the SQL, vinyl runs it in the current mode.

Each class subclasses the PostgreSQL backend's compiler of the same name (the package
``vinyl.compiler`` exports them: it is the compile-only connection's ``compiler_module``) and adds
``vinyl_execute_sql()``: the one I/O point, written once as a ``@maybe_async`` generator. Django's
own ``execute_sql()`` stays for Django code that calls it synchronously:

* sync mode: it runs ``vinyl_execute_sql()`` (sync) on Django's connection;
* while :func:`vinyl.compiler.replay.call_with_io` replays a Django function in async mode, it
  answers from the replay's tape (or asks for the I/O to be done);
* otherwise, in async mode, it raises: a synchronous query there would block the event loop.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import EmptyResultSet
from django.db import OperationalError
from django.db.backends.postgresql import compiler as pg
from django.db.models.sql.constants import (
    CURSOR,
    GET_ITERATOR_CHUNK_SIZE,
    MULTI,
    NO_RESULTS,
    SINGLE,
)

from ..compat import mirrors
from ..db.connection import (
    ALL_ROWS,
    CONNECT_ERRORS,
    acquire,
    connect_now,
    prepare,
    reacquire_read,
    read_elsewhere,
    run_on,
)
from ..db.wrapper import sql_connection
from ..flags import is_async
from ..futures import maybe_async
from .querycache import capturing
from .tape import answer

__all__ = [
    "SQLAggregateCompiler",
    "SQLCompiler",
    "SQLDeleteCompiler",
    "SQLInsertCompiler",
    "SQLUpdateCompiler",
]

_NOT_SET = object()


class VinylCompilerMixin:
    """The execution half shared by every vinyl compiler."""

    #: Rows prepared for the next ``execute_sql()`` call: vinyl runs the query itself (in either
    #: mode) and lets Django's iterables consume the result as if they had run it.
    vinyl_result: Any = _NOT_SET
    #: Whether the statement only reads, so that a router may send it elsewhere when its
    #: database cannot be reached (see vinyl.connection.read_elsewhere).
    vinyl_reads = True

    def execute_sql(
        self, result_type=MULTI, chunked_fetch=False, chunk_size=GET_ITERATOR_CHUNK_SIZE
    ):
        result = self.vinyl_result
        if result is not _NOT_SET:
            self.vinyl_result = _NOT_SET
            return result
        if is_async():
            return answer(self, (result_type, chunked_fetch, chunk_size))
        if result_type == CURSOR or chunked_fetch:
            return super().execute_sql(result_type, chunked_fetch, chunk_size)
        return self.vinyl_execute_sql(result_type, chunk_size=chunk_size)

    @mirrors("django.db.models.sql.compiler:SQLCompiler.execute_sql")
    @maybe_async
    def vinyl_execute_sql(
        self,
        result_type=MULTI,
        chunked_fetch=False,
        chunk_size=GET_ITERATOR_CHUNK_SIZE,
        compiled=None,
    ):
        """Run the query in the current mode; return what Django's ``execute_sql`` returns.

        MULTI returns a list holding one block of rows (the whole result, as Django's
        non-chunked fetch does). *compiled* is ``(sql, params)`` from vinyl.compiler.querycache's
        template, which then replaces ``as_sql()``.
        """
        result_type = result_type or NO_RESULTS
        if result_type == CURSOR or chunked_fetch:
            raise ValueError("vinyl streams through VinylQuerySet.iterator(), not CURSOR results")
        # The connection first, then the SQL: when tasks outnumber connections, a task that
        # waits for one has done no work yet, so the loop's time goes to the tasks that hold one
        # (compiling first made a burst of tasks compile while results waited to be read). The
        # pool is open once a connection is in hand, so the SQL that depends on the server's
        # version needs no prepare() here.
        alias = self.connection.alias
        try:
            try:
                handle = yield acquire(alias)
                if self.vinyl_reads:
                    connect_now(handle)
            except CONNECT_ERRORS as exc:
                handle = (yield read_elsewhere(alias, exc)) if self.vinyl_reads else None
                if handle is None:
                    raise
        except Exception:
            if compiled is None and self._matches_nothing():
                return [] if result_type == MULTI else None
            raise
        try:
            try:
                sql, params = compiled or self.as_sql()
                if not sql:
                    raise EmptyResultSet
            except EmptyResultSet:
                return [] if result_type == MULTI else None
            if compiled is None and (captured := capturing.get()) is not None:
                captured.append((self, sql, params, result_type))
            try:
                value = yield run_on(handle, sql, params, result_type)
            except OperationalError as exc:
                if not self.vinyl_reads:
                    raise
                lost, handle = handle, None
                yield lost.release()
                handle = yield reacquire_read(lost, exc)
                if handle is None:
                    raise
                value = yield run_on(handle, sql, params, result_type)
        finally:
            if handle is not None:
                yield handle.release()
        if result_type == MULTI:
            if self.has_extra_select:
                value = [row[: self.col_count] for row in value]
            return [value] if value else []
        if result_type == SINGLE and value:
            return value[: self.col_count]
        return value

    def _matches_nothing(self) -> bool:
        """Compile the query for a refused connection, as Django would before connecting.

        Django compiles first: a query that cannot compile raises its own error (a FieldError,
        say) and one that matches nothing returns without a connection, even where connecting
        is refused (``SimpleTestCase``'s guard, a server that is down); vinyl connects first
        (see vinyl_execute_sql), so on a refusal it compiles to give Django's answer.
        """
        try:
            sql, _ = self.as_sql()
        except EmptyResultSet:
            return True
        return not sql

    #: A cached statement's memo of get_converters() (see querycache.Template), else None.
    vinyl_converters: dict[Any, Any] | None = None

    def get_converters(self, expressions: Any) -> Any:
        memo = self.vinyl_converters
        if memo is None:
            return super().get_converters(expressions)
        # Keyed by identity; the entry holds the objects, so that no id is reused meanwhile.
        objects = (self.connection, *expressions)
        key = tuple(map(id, objects))
        entry = memo.get(key)
        if entry is None:
            if len(memo) >= 8:  # a template's compilers ask for one or two lists
                memo.clear()
            entry = memo[key] = (objects, super().get_converters(expressions))
        return entry[1]

    @mirrors("django.db.models.sql.query:Query.get_aggregation")
    def vinyl_aggregation(self, row: Any) -> dict[str, Any]:
        """Return what ``Query.get_aggregation`` returns once this, its query, answered *row*.

        Copied from the end of Django's get_aggregation (the same in 5.2 and 6.1), so that async
        mode needs no second pass of it (see vinyl.compiler.replay.call_with_io's *finish*).
        """
        cols = self.query.annotation_select.values()
        if row is None:
            result = [expression.empty_result_set_value for expression in cols]
        else:
            converters = self.get_converters(cols)
            rows = self.apply_converters((row,), converters)
            if self.has_composite_fields(cols):
                rows = self.composite_fields_to_tuples(rows, cols)
            result = next(rows)
        return dict(zip(self.query.annotation_select, result, strict=False))


class SQLCompiler(VinylCompilerMixin, pg.SQLCompiler):
    pass


class SQLInsertCompiler(pg.SQLInsertCompiler, SQLCompiler):
    def execute_sql(self, returning_fields=None):
        if is_async():
            return answer(self, (returning_fields,))
        return self.vinyl_execute_sql(returning_fields)

    @mirrors("django.db.models.sql.compiler:SQLInsertCompiler.execute_sql")
    @maybe_async
    def vinyl_execute_sql(self, returning_fields=None):
        """Run the INSERT statements; return the RETURNING rows, converted (as Django does)."""
        assert not (
            returning_fields
            and len(self.query.objs) != 1
            and not self.connection.features.can_return_rows_from_bulk_insert
        )
        yield prepare(self.connection.alias)
        opts = self.query.get_meta()
        self.returning_fields = returning_fields
        statements = self.as_sql()
        rows: list[Any] = []
        handle = yield acquire(self.connection.alias)
        try:
            for sql, params in statements:
                kind = ALL_ROWS if returning_fields else NO_RESULTS
                rows = yield run_on(handle, sql, params, kind)
        finally:
            yield handle.release()
        if not returning_fields:
            return []
        cols = [field.get_col(opts.db_table) for field in self.returning_fields]
        converters = self.get_converters(cols)
        if converters:
            rows = list(self.apply_converters(rows, converters))
        return rows


class SQLDeleteCompiler(pg.SQLDeleteCompiler, SQLCompiler):
    vinyl_reads = False


class SQLUpdateCompiler(pg.SQLUpdateCompiler, SQLCompiler):
    # Django's execute_sql() runs here first (related updates of multi-table inheritance
    # parents); its super().execute_sql() reaches VinylCompilerMixin for each statement.
    vinyl_reads = False


class SQLAggregateCompiler(pg.SQLAggregateCompiler, SQLCompiler):
    pass


def compiler_for(name: str) -> type:
    return globals()[name]


def compiler_of(query: Any, using: str) -> Any:
    """Return vinyl's compiler of *query* (any Django ``sql.Query``) on *using*, for the mode.

    ``query.get_compiler(using)`` on Django's own query classes (InsertQuery, UpdateQuery …)
    would give Django's compilers; this gives vinyl's, on the mode's connection.
    """
    return compiler_for(query.compiler)(query, sql_connection(using), using)
