"""Streaming: ``VinylQuerySet.iterator(chunk_size)`` over a server-side cursor, in both modes.

One stream is a :class:`_Stream`, whose steps (open the cursor, fetch the next chunk and build its
objects, close) are written once as ``@maybe_async`` generators. Two thin loops drive them: a
generator in sync mode and an async generator in async mode (wrapped in :class:`AsyncStream`, which
adds ``async with`` and ``aclose()``).

Where the rows come from:

* sync mode: Django's own ``connection.chunked_cursor()`` (a named cursor, ``WITH HOLD`` outside
  a transaction, as ``QuerySet.iterator()``);
* async mode inside ``atomic()``: a named cursor on the block's connection, which is entered for
  each statement only, so the loop's body can use the transaction meanwhile;
* async mode otherwise: a connection checked out of the pool for the whole stream, in a
  transaction of its own (``BEGIN``, ``DECLARE``, ``FETCH`` …, ``COMMIT``). It goes back to the
  pool when the loop ends, breaks (``aclose()``, ``async with`` or the async generator's
  finalisation) or is cancelled; on an error or a cancellation the pool rolls it back.

Each chunk becomes objects through Django's iterable classes (``ModelIterable`` & co., given the
rows as the compiler's result), and a queryset with ``prefetch_related`` prefetches per chunk, as
Django's ``iterator(chunk_size)`` does.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.core.exceptions import EmptyResultSet
from django.db import DatabaseError
from django.db.models.sql.constants import NO_RESULTS
from django.db.transaction import TransactionManagementError
from psycopg.errors import InvalidCursorName

from ..compat import mirrors
from ..db.connection import (
    CONNECT_ERRORS,
    AsyncHandle,
    acquire,
    connect_now,
    prepare,
    read_elsewhere,
    run_on,
)
from ..db.pool import begin_statement
from ..db.querylog import observed
from ..flags import is_async, reset_async, set_async
from ..futures import maybe_async
from ..futures.driver import as_coroutine
from ..futures.shields import guard, shielded
from .prefetch import prefetch_related_objects

__all__ = ["AsyncStream", "stream"]

DEFAULT_CHUNK_SIZE = 2000  # Django's iterator() default


class _Stream:
    """The state of one server-side cursor, and the steps that move it (mode-agnostic)."""

    def __init__(self, queryset: Any, chunk_size: int, server_side: bool) -> None:
        self.queryset = queryset
        self.alias = queryset.db
        self.chunk_size = chunk_size
        self.server_side = server_side
        self.prefetch = queryset._prefetch_related_lookups
        self.compiler: Any = None
        self.handle: Any = None  # held for the whole stream unless pinned (or sync)
        self.cursor: Any = None
        self.pin: Any = None
        self.pinned = False
        self.own_transaction = False
        self.finished = False
        self.broken_off = False  # closed before its end (aclose, loop shutdown, finaliser)

    @maybe_async
    def open(self):
        """Compile the query and declare its cursor."""
        try:
            yield prepare(self.alias)
            handle = yield acquire(self.alias)
            connect_now(handle)
        except CONNECT_ERRORS as exc:
            handle = yield read_elsewhere(self.alias, exc)  # a router's replica that is down
            if handle is None:
                raise
        self.pin = getattr(handle, "pin", None)
        self.pinned = self.pin is not None
        self.handle = handle
        try:
            compiler = self.queryset.query.get_compiler(using=self.alias)
            try:
                sql, params = compiler.as_sql()
                if not sql:
                    raise EmptyResultSet
            except EmptyResultSet:
                self.finished = True
                if not self.pinned:
                    self.handle = None
                    yield handle.release()
                return
            self.compiler = compiler
            self.alias = handle.alias
            if self.server_side:
                if is_async() and not self.pinned:
                    # A cursor without hold lives in a transaction: the stream's own.
                    yield run_on(handle, begin_statement(self.alias), None, NO_RESULTS)
                    self.own_transaction = True
                cursor = handle.chunked_cursor()
            else:  # DISABLE_SERVER_SIDE_CURSORS: a client-side cursor, read in chunks
                cursor = handle.cursor()
            self.cursor = cursor
            yield observed(_declare, handle, sql, params, cursor)
        finally:
            if self.pinned:
                self.handle = None
                yield handle.release()

    @mirrors("django.db.models.query:QuerySet._iterator")
    @maybe_async
    def next_chunk(self):
        """Fetch up to chunk_size rows and return their objects ([] once the cursor is done)."""
        if self.finished:
            return []
        handle = self.handle
        if self.pinned:
            # The block's connection, for this FETCH only (it raises if the block has ended).
            yield self.pin.enter()
            handle = AsyncHandle(self.alias, self.pin.conn, None, self.pin)
        try:
            with handle.errors:
                rows = yield guard(self.cursor.fetchmany(self.chunk_size))
        except DatabaseError as exc:
            if isinstance(exc.__cause__, InvalidCursorName):
                raise type(exc)(_cursor_lost(exc, self.alias)) from exc
            raise  # a database error: the transaction's owner handles it, as Django does
        except BaseException:
            if self.pinned:
                handle.failed()  # cut off mid-FETCH (cancelled): the block must not commit
            raise
        finally:
            if self.pinned:
                yield handle.release()
        if not rows:
            self.finished = True
            return []
        compiler = self.compiler
        if compiler.has_extra_select:
            rows = [row[: compiler.col_count] for row in rows]
        objs = self.queryset._objects_from(compiler, [rows])  # Django's iterable classes
        if self.prefetch:
            yield prefetch_related_objects(objs, *self.prefetch)
        return objs

    @maybe_async
    def close(self, failed: bool):
        """Release the cursor and the connection (clean, or left to the pool to roll back)."""
        cursor, handle = self.cursor, self.handle
        self.cursor = self.handle = None
        self.finished = True
        try:
            if cursor is None:
                return
            if self.own_transaction and not failed:
                # COMMIT ends the cursor too; closing it afterwards costs no round trip.
                yield run_on(handle, "COMMIT", None, NO_RESULTS)
            if self.pinned:
                yield self._close_pinned(cursor)
            else:
                # After a failure psycopg sends nothing unless the transaction is still usable.
                try:
                    with handle.errors:
                        yield cursor.close()
                except DatabaseError:
                    cursor._close()  # psycopg's no-I/O part: it is closed for us all the same
                    if not failed:
                        raise  # after a failure, the error that ended the stream is the one
        finally:
            if handle is not None and not self.pinned:
                yield handle.release()  # the pool rolls back a connection left in a transaction

    @maybe_async
    def _close_pinned(self, cursor: Any):
        pin = self.pin
        if not pin.closed:
            try:
                yield pin.enter(check=False)
            except TransactionManagementError:
                pass  # the block ended while this task waited
            else:
                try:
                    yield cursor.close()
                    return
                finally:
                    pin.leave()
        # The block has ended, and its cursor with it; the connection may serve someone else by
        # now, so nothing may be sent on it: mark the cursor closed (psycopg's no-I/O part).
        cursor._close()


def _cursor_lost(exc: Exception, alias: str) -> str:
    # Sync mode outside a transaction declares the cursor WITH HOLD, as Django does, and
    # fetches with later statements: a transaction-pooling PgBouncer may run those on another
    # server session, which has no such cursor.
    return (
        f"{exc}\nThe server-side cursor of iterator() is gone: a statement after its DECLARE "
        f"ran in another server session. If DATABASES[{alias!r}] is behind a transaction-pooling "
        f"PgBouncer, set DATABASES[{alias!r}]['DISABLE_SERVER_SIDE_CURSORS'] = True, or iterate "
        "inside atomic()."
    )


@maybe_async
def _declare(handle: Any, sql: str, params: Any, cursor: Any):
    with handle.errors:
        yield guard(cursor.execute(sql, params))


def _iterate_sync(state: _Stream) -> Iterator[Any]:
    failed = True
    try:
        with _mode(False):
            state.open()
        while True:
            with _mode(False):
                objs = state.next_chunk()
            if not objs:
                break
            yield from objs
        failed = False
    except GeneratorExit:  # the loop broke off: a clean end
        failed = False
        raise
    finally:
        with _mode(False):
            state.close(failed)


async def _iterate_async(state: _Stream) -> Any:
    failed = True
    try:
        with _mode(True):
            await state.open()
        while True:
            with _mode(True):
                objs = await state.next_chunk()
            if not objs:
                break
            for obj in objs:
                yield obj
        failed = False
    except GeneratorExit:  # aclose(): the loop broke off, a clean end
        failed = False
        state.broken_off = True
        raise
    finally:
        with _mode(True):
            await shielded(as_coroutine(state.close(failed)))


@contextmanager
def _mode(value: bool) -> Iterator[None]:
    # The stream keeps the mode it was created in, whoever resumes it (an asyncgen finaliser,
    # code under another mode). Set and reset between two yields of the loop, never across one,
    # so the flag never leaks into the consumer's context.
    token = set_async(value)
    try:
        yield
    finally:
        reset_async(token)


class AsyncStream:
    """The async iterator ``iterator()`` returns in async mode.

    ``async for obj in qs.iterator(chunk_size=500)``. After a ``break``, the connection goes back
    to the pool when the async generator is finalised (on the loop, soon after); to release it at
    once, use ``async with qs.iterator() as stream: async for obj in stream: ...`` or call
    ``await stream.aclose()``. Outside ``atomic()`` the stream holds one pooled connection until
    then, so queries in the loop's body need another one from the pool.
    """

    __slots__ = ("_agen", "_state", "_closed")

    def __init__(self, state: _Stream) -> None:
        self._agen = _iterate_async(state)
        self._state = state
        self._closed = False

    def __aiter__(self) -> AsyncStream:
        return self

    def __anext__(self) -> Any:
        if self._state.broken_off and not self._closed:
            # Not closed by its consumer: the event loop that ran it shut down (asyncio closes
            # open async generators then). Ending quietly would pass for the end of the rows.
            raise RuntimeError(
                "This iterator() stream was closed before its end because the event loop it "
                "ran on shut down (or finalised it). A stream belongs to its event loop: iterate "
                "it to its end, or aclose() it, in that loop."
            )
        return self._agen.__anext__()

    async def aclose(self) -> None:
        """Stop the stream and release its cursor and connection."""
        self._closed = True
        await self._agen.aclose()

    async def __aenter__(self) -> AsyncStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._closed = True
        await self._agen.aclose()

    def __iter__(self) -> Any:
        raise TypeError(
            "In async mode iterator() returns an async iterator: use `async for obj in "
            "qs.iterator()`, or run this code in sync mode."
        )


def stream(queryset: Any, chunk_size: int | None, server_side: bool) -> Any:
    """Return ``queryset.iterator(chunk_size)`` for the current mode (see the module docstring)."""
    state = _Stream(queryset, chunk_size or DEFAULT_CHUNK_SIZE, server_side)
    if is_async():
        return AsyncStream(state)
    return _iterate_sync(state)
