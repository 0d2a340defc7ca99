"""Run a Django function whose query sits in the middle of its logic, in async mode.

Some of Django's query logic does its I/O halfway through (``Query.get_aggregation``,
``prefetch_related_objects``, ``QuerySet.in_bulk``, ``Collector.collect`` …). Rather than copy
those functions, async mode runs them as they are, once, on a greenlet (vinyl.db.worker):
vinyl's compile-only connections are installed in its context, and when the function reaches a
query, its compiler's ``execute_sql()`` hands the query to the calling task, which runs it on the
event loop and hands back the rows (or raises the error where the query stood). So the function,
and the user code inside it, runs exactly as often as in Django's own sync call, and no answer
can ever be given to the wrong query.

A function whose first query is its last step (``get_aggregation``, behind ``count()`` and
``aggregate()``) needs no greenlet: it runs on the loop up to that query (the compiler raises
:class:`NeedsQuery`), and the caller finishes from the answer (*finish*).

Sync mode calls the functions directly: there Django runs its own queries on its own connection.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connections

from ..db.worker import Call, replaced_connections
from ..db.wrapper import is_postgresql, sql_connection
from ..flags import is_async, reset_async, set_async
from ..futures import maybe_async
from . import compilers
from .tape import _FINISH, NeedsQuery, _tape

__all__ = ["call_with_io"]


class _Installed:
    """Install vinyl's compile-only connection as ``connections[alias]`` for this context.

    (``connections`` keeps a contextvar per task, or per greenlet context, while a loop runs in
    the thread, and a thread-local otherwise.)

    Only on PostgreSQL aliases: the others (SQLite, MySQL, an empty ``default``) are left as
    they are. Whatever happens, every alias installed is restored on exit.
    """

    def __init__(self) -> None:
        self.saved: list[tuple[str, Any]] = []
        self.token: Any = None

    def __enter__(self) -> None:
        try:
            for alias in connections.settings:
                if is_postgresql(alias):
                    wrapper = sql_connection(alias)
                    self.saved.append((alias, connections[alias]))
                    connections[alias] = wrapper
            # What a statement run here reports to (see vinyl.db.querylog).
            self.token = replaced_connections.set(dict(self.saved))
        except BaseException:
            self.__exit__()
            raise

    def __exit__(self, *exc: object) -> None:
        if self.token is not None:
            replaced_connections.reset(self.token)
            self.token = None
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
        for alias in connections.settings:
            if not is_postgresql(alias):
                continue
            ops = connections[alias].ops
            if ops.compiler_module == _PG_COMPILERS:
                self.saved.append((ops, ops._cache))  # the module ops.compiler() imported
                ops._cache = compilers

    def __exit__(self, *exc: object) -> None:
        for ops, previous in reversed(self.saved):
            ops._cache = previous
        self.saved.clear()


@contextmanager
def _in_worker(call: Any) -> Iterator[None]:
    """The greenlet's setting: its queries go to *call*, vinyl compiles them (async mode)."""
    tape, mode = _tape.set(call), set_async(True)
    try:
        with _Installed():
            yield
    finally:
        reset_async(mode)
        _tape.reset(tape)


@maybe_async
def call_with_io(func: Callable[[], Any], finish: Callable[[Any, Any], Any] | None = None):
    """Return ``func()``; in async mode, run it once with its queries run on the event loop.

    *finish* is for a function whose first query is its last step (``Query.get_aggregation``):
    async mode then runs *func* on the loop up to that query and returns
    ``finish(compiler, answer)`` (no greenlet, one compilation).
    """
    if not is_async():
        with _VinylCompilers():
            return func()
    if finish is not None:
        token = _tape.set(_FINISH)
        try:
            with _Installed():
                return func()
        except NeedsQuery as exc:
            need = exc
        finally:
            _tape.reset(token)
        result = yield need.compiler.vinyl_execute_sql(*need.args)
        return finish(need.compiler, result)
    call = Call(func, _in_worker)
    kind, payload = call.start()
    while kind in ("query", "wait"):
        if kind == "wait":  # a vinyl operation run in the function waits for the loop
            try:
                yield call.waitable(payload)
            except GeneratorExit:
                call.abandon()
                raise
            except BaseException as exc:  # cancelled: the operation handles it, as a task's
                kind, payload = call.throw(exc)
            else:
                kind, payload = call.send(None)
            continue
        compiler, args = payload
        try:
            result = yield compiler.vinyl_execute_sql(*args)
        except Exception as exc:
            kind, payload = call.throw(exc)  # raised where the query stood, as in Django
        except BaseException:
            # Cancelled, or closed unfinished: the function unwinds now (Abandoned at its
            # query), so no query of it outlives this call.
            call.abandon()
            raise
        else:
            kind, payload = call.send(result)
    if kind == "error":
        raise payload
    return payload
