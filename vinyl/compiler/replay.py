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

from collections.abc import Callable
from typing import Any

from django.db import connections

from ..db.wrapper import sql_connection
from ..flags import is_async
from ..futures import maybe_async
from . import compilers
from .tape import _FINISH, NeedsQuery, _tape

__all__ = ["call_with_io"]


class _Installed:
    """Install vinyl's compile-only connection as ``connections[alias]`` for this thread."""

    def __init__(self) -> None:
        self.saved: list[tuple[str, Any]] = []

    def __enter__(self) -> None:
        for alias in connections.settings:
            self.saved.append((alias, connections[alias]))
            connections[alias] = sql_connection(alias)

    def __exit__(self, *exc: object) -> None:
        for alias, previous in self.saved:
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
        for alias in connections.settings:
            ops = connections[alias].ops
            if ops.compiler_module == _PG_COMPILERS:
                self.saved.append((ops, ops._cache))  # the module ops.compiler() imported
                ops._cache = compilers

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
