"""Where the two modes meet the database: acquire a connection, run a statement, release it.

Sync mode runs on Django's own connection for the alias (``connections[alias]``), so vinyl and
``Model.objects`` share its transaction. Async mode runs on the task's pinned transaction
connection if an ``atomic()`` block is open for the alias, else on a connection checked out of the
loop's pool for the duration of one operation (autocommit).

Queries reach the database through :func:`acquire` and :func:`run`/:func:`run_on` (the compilers,
raw SQL); two kinds of statement use the handle's connection directly: the transaction-control
statements of an async ``atomic()`` (vinyl.db.transaction's ``Pin.execute``) and the
server-side cursors of a stream (vinyl.model.streaming). Every statement passes through
``vinyl.db.querylog.observed`` (logging, Django's query list and execute wrappers in async mode,
vinyl's watchers in both).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Sequence
from typing import Any

import psycopg
from django.db import connections, router
from django.db.models.sql.constants import CURSOR, MULTI, NO_RESULTS, ROW_COUNT, SINGLE
from django.db.utils import OperationalError as DjangoOperationalError
from psycopg.client_cursor import ClientCursorMixin

from ..flags import is_async
from ..futures import maybe_async
from ..futures.driver import _Ready
from ..futures.shields import guard, shielded
from .pins import current_pin, in_test_run
from .pool import get_pool, getconn
from .querylog import observed
from .wrapper import compile_wrapper, sql_connection

__all__ = [
    "ALL_ROWS",
    "BUFFERED",
    "CURSOR",
    "DESCRIBED",
    "MANY",
    "MULTI",
    "NO_RESULTS",
    "ROW_COUNT",
    "SINGLE",
    "acquire",
    "prepare",
    "run",
    "run_on",
]

# Result kinds beyond Django's: every row of a statement that returns rows (RETURNING),
# (cursor.description, every row) for raw SQL, whose columns are only known from the cursor, and
# for vinyl.cursor(): (description, every row or None, rowcount) of one statement (BUFFERED) or of
# executemany() with a list of parameter sequences (MANY).
ALL_ROWS = "all_rows"
DESCRIBED = "described"
BUFFERED = "buffered"
MANY = "many"


class SyncHandle:
    """Django's own connection for the alias."""

    __slots__ = ("alias", "wrapper")
    observed_by_django = True  # Django's cursor logs and wraps its statements (vinyl.db.querylog)

    def __init__(self, alias: str) -> None:
        self.alias = alias
        self.wrapper = connections[alias]

    @property
    def errors(self) -> Any:
        return self.wrapper.wrap_database_errors

    def cursor(self) -> Any:
        return self.wrapper.cursor()

    def statement_cursor(self, result: str) -> Any:
        return self.wrapper.cursor()

    def keeps(self, cursor: Any) -> bool:
        return False  # Django's cursors are closed after each statement

    def chunked_cursor(self) -> Any:
        return self.wrapper.chunked_cursor()

    def failed(self) -> None:
        pass

    def lost(self) -> bool:
        """Whether the connection died (outside a transaction), so a read may run elsewhere."""
        conn = self.wrapper.connection
        return conn is not None and conn.broken and not self.wrapper.in_atomic_block

    def check_usable(self) -> None:
        pass  # Django's cursor validates its connection's transaction itself

    def release(self) -> None:
        return None


class AsyncServerSideCursor(ClientCursorMixin, psycopg.AsyncServerCursor):
    """A named cursor with client-side binding, as Django's ``ServerSideCursor`` (ticket #20516)."""


_cursor_names = itertools.count(1)
_KEPT_ROWS = 1000  # the largest result a connection's statement cursor keeps while idle
_RELEASED = _Ready(None)  # what release() of a pinned handle awaits: nothing


class AsyncHandle:
    """A psycopg AsyncConnection lent to one operation: pooled, or a task's transaction."""

    __slots__ = ("alias", "conn", "pool", "pin", "wrapper")
    observed_by_django = False

    def __init__(self, alias: str, conn: Any, pool: Any, pin: Any) -> None:
        self.alias = alias
        self.conn = conn
        self.pool = pool
        self.pin = pin
        self.wrapper = compile_wrapper(alias)

    @property
    def errors(self) -> Any:
        return self.wrapper.wrap_database_errors

    def cursor(self) -> Any:
        return self.conn.cursor()

    def statement_cursor(self, result: str) -> Any:
        """The cursor for one statement of :func:`run_on`: the connection's own, reused.

        psycopg builds a cursor's adapters and transformer anew for each new cursor, and keeps
        its transformer when the next statement is the same string object (a cached template's
        SQL): reusing one cursor per connection saves that work on every statement. See keeps().
        """
        if result == MANY:
            return self.conn.cursor()
        cursor = getattr(self.conn, "_vinyl_cursor", None)
        if cursor is None or cursor.closed:
            cursor = self.conn._vinyl_cursor = self.conn.cursor()
        return cursor

    def keeps(self, cursor: Any) -> bool:
        """Whether *cursor*, its statement done, stays open for the connection's next one.

        Not after a large result, which the cursor would hold while the connection idles in its
        pool (psycopg frees a result at the next execute() or at close()).
        """
        if cursor is not getattr(self.conn, "_vinyl_cursor", None):
            return False
        if cursor.rowcount > _KEPT_ROWS:
            self.conn._vinyl_cursor = None
            return False
        return True

    def chunked_cursor(self) -> Any:
        # Runs inside a transaction (the pinned one, or the stream's own), so no WITH HOLD. The
        # cursor class is Django's choice: client-side binding unless server_side_binding.
        cls = (
            psycopg.AsyncServerCursor
            if self.wrapper.features.uses_server_side_binding
            else AsyncServerSideCursor
        )
        return cls(self.conn, name=f"_vinyl_cursor_{next(_cursor_names)}", scrollable=False)

    def failed(self) -> None:
        if self.pin is not None:
            self.pin.failed()

    def lost(self) -> bool:
        """Whether the connection died (outside a transaction), so a read may run elsewhere."""
        return self.pin is None and self.conn.broken  # the pool discards it on release

    def check_usable(self) -> None:
        """Raise as Django's ``validate_no_broken_transaction`` does (a held handle)."""
        if self.pin is not None:
            self.pin.check_usable()

    def release(self) -> Awaitable[None]:
        if self.pin is not None:
            self.pin.leave()
            return _RELEASED
        # Shielded: a cancelled task must still hand its connection back (the pool rolls back,
        # resets or discards it as its state requires).
        return shielded(self.pool.putconn(self.conn))


async def _acquire_async(alias: str) -> AsyncHandle:
    if in_test_run():
        # Django's guards and the test's transaction first. Late: testdb builds on
        # transaction's Pin, which builds on this module (tests only).
        from .testdb import prepare_in_tests

        await prepare_in_tests(alias)
    pin = current_pin(alias)
    if pin is not None:
        await pin.enter()
        return AsyncHandle(alias, pin.conn, None, pin)
    conn, pool = await getconn(alias)
    return AsyncHandle(alias, conn, pool, None)


def prepare(alias: str) -> Any:
    """Make sure *alias* can compile SQL in the current mode (maybe-async; None when ready).

    Some of Django's SQL depends on the server version, which async mode learns from the pool's
    first connection, so the pool is opened before the first query is compiled.
    """
    if not is_async() or "pg_version" in compile_wrapper(alias).__dict__:
        return None
    return get_pool(alias)


def acquire(alias: str) -> Any:
    """Lend a connection handle for one operation (maybe-async); give it back with release()."""
    if is_async():
        return _acquire_async(alias)
    return SyncHandle(alias)


# What acquire() (and prepare(), which may open the pool) raise when no connection can be had.
CONNECT_ERRORS = (DjangoOperationalError, psycopg.OperationalError)


def connect_now(handle: Any) -> None:
    """Sync mode: connect Django's connection now, so that a server that cannot be reached is
    seen before the statement, where a read can still go elsewhere (see read_elsewhere)."""
    if type(handle) is SyncHandle and handle.wrapper.connection is None:
        with handle.errors:
            handle.wrapper.ensure_connection()


@maybe_async
def read_elsewhere(alias: str, error: BaseException):
    """A handle for a read that could not get a connection of *alias*, or None.

    A database router with a ``vinyl_read_fallback(alias, error)`` method
    (:class:`vinyl.routers.PrimaryReplicaRouter`) may name another alias for it; the handle's
    ``alias`` says where the read runs then.
    """
    other = _read_fallback(alias, error)
    if other is None:
        return None
    return (yield _acquire_instead(alias, other))


@maybe_async
def reacquire_read(handle: Any, error: BaseException):
    """After a read's statement failed with *error*: a handle to run it again on, or None.

    Only when the connection died outside a transaction (a replica that went down while its
    connection sat in the pool, say) and a router names another alias (see read_elsewhere). The
    caller has released *handle*.
    """
    if not handle.lost():
        return None
    instead = yield read_elsewhere(handle.alias, error)
    if instead is not None and type(handle) is SyncHandle:
        # Django would reuse the dead connection until the request ends: reconnect next time.
        handle.wrapper.close()
    return instead


@maybe_async
def _acquire_instead(alias: str, other: str):
    yield prepare(other)
    # The SQL is compiled for *alias*, whose server version vinyl may never have learnt: a
    # streaming replica runs the primary's major version, which is all Django's SQL uses.
    compiler_wrapper = sql_connection(alias)
    if "pg_version" not in compiler_wrapper.__dict__:
        compiler_wrapper.__dict__["pg_version"] = sql_connection(other).pg_version
    return (yield acquire(other))


def _read_fallback(alias: str, error: BaseException) -> str | None:
    for candidate in router.routers:
        fallback = getattr(candidate, "vinyl_read_fallback", None)
        if fallback is not None:
            other = fallback(alias, error)
            if other is not None and other != alias:
                return other
    return None


@maybe_async
def run(alias: str, sql: Any, params: Sequence[Any] | None, result: str = MULTI):
    """Run one statement and return what *result* asks for.

    ``MULTI``/``ALL_ROWS``: every row (a list); ``SINGLE``: the first row or None;
    ``ROW_COUNT``: the number of rows affected; ``NO_RESULTS``: None.
    """
    handle = yield acquire(alias)
    try:
        value = yield run_on(handle, sql, params, result)
    finally:
        yield handle.release()
    return value


def run_on(handle: Any, sql: Any, params: Sequence[Any] | None, result: str = MULTI) -> Any:
    """Run one statement on a handle already acquired (maybe-async; seen by db.querylog)."""
    return observed(_execute, handle, sql, params, result)


@maybe_async
def _execute(handle: Any, sql: Any, params: Sequence[Any] | None, result: str):
    try:
        with handle.errors:
            cursor = handle.statement_cursor(result)
            kept = False
            try:
                if result == MANY:
                    statement = cursor.executemany(sql, params)
                else:
                    statement = cursor.execute(sql, params)
                yield guard(statement)  # see guard(): cancellation
                if result in (MULTI, ALL_ROWS):
                    value = yield cursor.fetchall()
                elif result == SINGLE:
                    value = yield cursor.fetchone()
                elif result == DESCRIBED:
                    value = (cursor.description, (yield cursor.fetchall()))
                elif result in (BUFFERED, MANY):
                    description = cursor.description
                    rows = None if description is None else (yield cursor.fetchall())
                    value = (description, rows, cursor.rowcount)
                elif result == ROW_COUNT:
                    value = cursor.rowcount
                else:
                    value = None
                kept = handle.keeps(cursor)
            finally:
                if not kept:  # (after an error too: a new cursor for the next statement)
                    yield cursor.close()
    except asyncio.CancelledError:
        # Cut off mid-statement: whether it took effect is unknown (a database error, by
        # contrast, is Django's business: PostgreSQL refuses what follows, as in sync mode).
        handle.failed()
        raise
    return value
