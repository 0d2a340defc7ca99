"""A DB-API cursor for raw SQL in both modes: ``vinyl.cursor(using=None)``.

Django's ``connection.cursor()`` serves sync code only; this cursor is the same for both modes.
Sync mode runs it on Django's own connection (Django's cursor wrapper: its transaction, error
classes, query log and execute wrappers). Async mode runs it on the task's ``atomic()`` connection
of the alias when a block is open, else on a connection checked out of the pool for the cursor's
life (autocommit: each statement is its own transaction). Either way every statement goes through
:func:`vinyl.db.connection.run_on`, the single statement path of vinyl's ORM, so it raises Django's
exception classes and is seen by whatever watches vinyl's statements.

Rows come as psycopg returns them to Django (tuples, Django's adapters and time zone). A statement's
rows are read when it completes; the fetch methods hand them out from memory (for millions of rows
use ``Model.vinyl...iterator()``, which streams).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from django.db import DEFAULT_DB_ALIAS, ProgrammingError

from ..flags import is_async
from ..futures import maybe_async, ready
from .connection import BUFFERED, MANY, acquire, run_on

if TYPE_CHECKING:
    from typing import Self

__all__ = ["Cursor", "cursor"]


class Cursor:
    """A cursor on one connection of a database alias, held from ``open()`` to ``close()``.

    Use ``with vinyl.cursor() as c:`` in sync mode and ``async with vinyl.cursor() as c:`` in async
    mode; universal (``@maybe_async``) code writes ``c = yield vinyl.cursor().open()`` and
    ``yield c.close()`` in a ``finally``. ``execute()``, ``executemany()`` and the fetch methods
    return their result in sync mode and an awaitable in async mode, like every vinyl operation.
    """

    def __init__(self, using: str | None = None) -> None:
        self.alias = using or DEFAULT_DB_ALIAS
        #: Rows fetchmany() returns when called without a size (DB-API; psycopg's default).
        self.arraysize = 1
        self._handle: Any = None
        self._closed = False
        self._description: Any = None
        self._rows: list[Any] | None = None
        self._pos = 0
        self._rowcount = -1

    # -- opening and closing -----------------------------------------------------------------
    @maybe_async
    def open(self):
        """Take the connection: the task's ``atomic()`` one, a pooled one, or Django's."""
        if self._closed:
            raise ProgrammingError("This vinyl cursor is closed; open a new one.")
        if self._handle is not None:
            raise ProgrammingError("This vinyl cursor is already open.")
        self._handle = yield acquire(self.alias)
        return self

    @maybe_async
    def close(self):
        """Give the connection back (it stays open in sync mode: it is Django's)."""
        handle, self._handle = self._handle, None
        self._closed = True
        self._rows = None
        if handle is not None:
            yield handle.release()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Self:
        if is_async():
            raise TypeError(
                "vinyl.cursor() is in async mode here: use `async with vinyl.cursor() as c:` "
                "(and `await c.execute(...)`), or enter it under vinyl.sync_mode()."
            )
        return self.open()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        if not is_async():
            raise TypeError("vinyl.cursor() is in sync mode here: use `with vinyl.cursor() as c:`.")
        return await self.open()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- statements --------------------------------------------------------------------------
    @maybe_async
    def execute(self, sql: Any, params: Sequence[Any] | dict[str, Any] | None = None):
        """Run one statement (``%s`` or ``%(name)s`` placeholders); return the cursor."""
        handle = self._open_handle()
        self._take((yield run_on(handle, sql, params, BUFFERED)))
        return self

    @maybe_async
    def executemany(self, sql: Any, param_list: Iterable[Sequence[Any] | dict[str, Any]]):
        """Run one statement once per parameter sequence; return the cursor."""
        handle = self._open_handle()
        self._take((yield run_on(handle, sql, list(param_list), MANY)))
        return self

    def _open_handle(self) -> Any:
        handle = self._handle
        if handle is None:
            if self._closed:
                raise ProgrammingError("This vinyl cursor is closed; open a new one.")
            raise ProgrammingError(
                "This vinyl cursor is not open: use `with vinyl.cursor() as c:` (sync mode), "
                "`async with vinyl.cursor() as c:` (async mode) or `c = yield "
                "vinyl.cursor().open()` (universal code)."
            )
        handle.check_usable()
        self._description = self._rows = None
        self._rowcount = -1
        return handle

    def _take(self, result: tuple[Any, list[Any] | None, int]) -> None:
        self._description, self._rows, self._rowcount = result
        self._pos = 0

    # -- results -----------------------------------------------------------------------------
    @property
    def description(self) -> Any:
        """psycopg's column descriptions of the last statement, None if it returned no rows."""
        return self._description

    @property
    def rowcount(self) -> int:
        """Rows returned or affected by the last statement; -1 before the first."""
        return self._rowcount

    def _rows_left(self) -> list[Any]:
        if self._closed:
            raise ProgrammingError("This vinyl cursor is closed; open a new one.")
        if self._rows is None:
            # psycopg's messages for the same mistakes on its own cursor.
            raise ProgrammingError(
                "no result available"
                if self._rowcount == -1
                else "the last operation didn't produce records"
            )
        return self._rows

    def fetchone(self) -> Any:
        """Return the next row or None (maybe-async)."""
        rows = self._rows_left()
        if self._pos >= len(rows):
            return ready(None)
        self._pos += 1
        return ready(rows[self._pos - 1])

    def fetchmany(self, size: int | None = None) -> Any:
        """Return a list of the next *size* rows (``arraysize`` by default; maybe-async)."""
        rows = self._rows_left()
        end = self._pos + (size or self.arraysize)  # psycopg's rule: 0 or None is arraysize
        chunk = rows[self._pos : end]
        self._pos += len(chunk)
        return ready(chunk)

    def fetchall(self) -> Any:
        """Return a list of the rows not fetched yet (maybe-async)."""
        rows = self._rows_left()
        chunk = rows[self._pos :]
        self._pos = len(rows)
        return ready(chunk)

    def __iter__(self) -> Iterator[Any]:
        rows = self._rows_left()
        while self._pos < len(rows):
            self._pos += 1
            yield rows[self._pos - 1]

    def __aiter__(self) -> Any:
        return _aiter(self)

    def __del__(self) -> None:
        # An async handle left open keeps its pooled connection checked out (or the atomic()
        # block's connection held) for good: nothing can await its release from here.
        if getattr(self._handle, "conn", None) is not None:
            warnings.warn(
                f"A vinyl cursor on database {self.alias!r} was never closed, so its connection "
                "was never given back: use `async with vinyl.cursor() as c:`, or `await c.close()` "
                "in a finally block.",
                ResourceWarning,
                stacklevel=2,
            )

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._handle is not None else "not open"
        return f"<vinyl.Cursor {self.alias!r} {state}>"


async def _aiter(cursor: Cursor) -> Any:
    for row in cursor:
        yield row


def cursor(using: str | None = None) -> Cursor:
    """Return a cursor for raw SQL on database *using* (default: ``"default"``), not yet open.

    Django's ``connection.cursor()`` for both modes: enter it with ``with`` (sync mode) or
    ``async with`` (async mode), or ``yield c.open()`` in universal code. In async mode it runs on
    the task's ``atomic()`` connection when a block is open for the alias (holding it, so the
    block's other tasks wait until the cursor closes), else on a pooled connection in autocommit.
    """
    return Cursor(using)
