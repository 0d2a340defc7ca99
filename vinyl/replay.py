"""Run a Django function whose query sits in the middle of its logic, in async mode.

Some of Django's query logic does its I/O halfway through (``Query.get_aggregation``,
``prefetch_related_objects``, ``QuerySet.in_bulk`` …). Rather than copy those functions, async mode
*replays* them: the function runs with vinyl's compile-only connection installed for the thread;
when it reaches a query whose answer is not known yet, the compiler raises :class:`NeedsQuery`;
vinyl runs that query asynchronously, records the answer on a tape (keyed by SQL and parameters),
and calls the function again from the start. Between two awaits nothing else runs on the loop, so
the installed connection is never seen by another task.

The functions replayed must be free of side effects other than the caches they fill. Sync mode
calls them directly: there Django runs its own queries on its own connection.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import Any

from django.core.exceptions import EmptyResultSet
from django.db import connections
from django.db.models.sql.constants import MULTI

from .flags import is_async
from .futures import maybe_async
from .pool import is_postgresql, sql_connection

__all__ = ["call_with_io", "SynchronousQueryError"]


class SynchronousQueryError(RuntimeError):
    """A query was about to run synchronously in async mode."""


class NeedsQuery(BaseException):
    """Raised inside a replayed function at a query whose answer is not on the tape yet.

    A BaseException, so that Django's ``except Exception`` blocks let it through.
    """

    def __init__(self, compiler: Any, args: tuple[Any, ...], key: Any) -> None:
        self.compiler, self.args, self.key = compiler, args, key


_tape: contextvars.ContextVar[dict[Any, Any] | None] = contextvars.ContextVar(
    "vinyl_tape", default=None
)
# The tape of a call_with_io(func, finish): func's first query is its last, so it needs no key.
_FINISH: dict[Any, Any] = {}


def _key(compiler: Any, args: tuple[Any, ...]) -> Any:
    sql = compiler.as_sql()  # also sets up compiler.select & co. for the caller
    return (repr(sql), repr(args))


def answer(compiler: Any, args: tuple[Any, ...]) -> Any:
    """Return the recorded result of this query, or raise NeedsQuery (async mode only)."""
    tape = _tape.get()
    if tape is None:
        raise SynchronousQueryError(
            "A query was about to run synchronously in async mode, which would block the event "
            "loop. Use vinyl's API (Model.vinyl querysets, `await obj.q.<relation>`) and await "
            "it, or run this code in sync mode (vinyl.sync_mode(), in a thread without a loop)."
        )
    if tape is _FINISH:
        raise NeedsQuery(compiler, args, None)  # compiled once, by vinyl_execute_sql()
    try:
        key = _key(compiler, args)
    except EmptyResultSet:
        # No query to run: answer what Django's execute_sql() answers (an empty MULTI result,
        # None otherwise) and let the replayed function carry on, e.g. count() of none() is 0.
        return [] if args and args[0] == MULTI else None
    if key in tape:
        result = tape[key]
        if args and args[0] == MULTI and isinstance(result, list):
            return list(result)
        return result
    raise NeedsQuery(compiler, args, key)


class _Installed:
    """Install vinyl's compile-only connection as ``connections[alias]`` for this thread.

    Only on PostgreSQL aliases: the others (SQLite, MySQL, an empty ``default``) are left as
    they are. Whatever happens, every alias installed is restored on exit.
    """

    def __init__(self) -> None:
        self.saved: list[tuple[str, Any]] = []

    def __enter__(self) -> None:
        try:
            for alias in connections.settings:
                if is_postgresql(alias):
                    wrapper = sql_connection(alias)
                    self.saved.append((alias, connections[alias]))
                    connections[alias] = wrapper
        except BaseException:
            self.__exit__()
            raise

    def __exit__(self, *exc: object) -> None:
        for alias, previous in reversed(self.saved):
            connections[alias] = previous
        self.saved.clear()


_PG_COMPILERS = "django.db.backends.postgresql.compiler"


class _VinylCompilers:
    """Sync mode: Django's own connections compile with vinyl's compilers for this thread.

    So the queries of a Django function (e.g. the AggregateQuery of a distinct count) run through
    vinyl's execution path in sync mode too, on Django's connection, as they do in async mode;
    capture_queries() sees them in both modes.
    """

    def __init__(self) -> None:
        self.saved: list[tuple[Any, Any]] = []

    def __enter__(self) -> None:
        from . import compiler

        for alias in connections.settings:
            if not is_postgresql(alias):
                continue
            ops = connections[alias].ops
            if ops.compiler_module == _PG_COMPILERS:
                self.saved.append((ops, ops._cache))  # the module ops.compiler() imported
                ops._cache = compiler

    def __exit__(self, *exc: object) -> None:
        for ops, previous in reversed(self.saved):
            ops._cache = previous
        self.saved.clear()


@maybe_async
def call_with_io(func: Callable[[], Any], finish: Callable[[Any, Any], Any] | None = None):
    """Return ``func()``; in async mode, replay it until every query it makes is answered.

    *finish* is for a function whose first query is its last step (``Query.get_aggregation``):
    async mode then runs *func* once, up to that query, and returns ``finish(compiler, answer)``
    instead of replaying it (one pass and one compilation instead of two and three).
    """
    if not is_async():
        with _VinylCompilers():
            return func()
    tape: dict[Any, Any] = {} if finish is None else _FINISH
    while True:
        token = _tape.set(tape)
        try:
            with _Installed():
                return func()
        except NeedsQuery as exc:
            need = exc
        finally:
            _tape.reset(token)
        result = yield need.compiler.vinyl_execute_sql(*need.args)
        if finish is not None:
            return finish(need.compiler, result)
        tape[need.key] = result
