"""Run a Django function whose query sits in the middle of its logic, in async mode.

Some of Django's query logic does its I/O halfway through (``Query.get_aggregation``,
``prefetch_related_objects``, ``QuerySet.in_bulk``, ``Collector.collect`` …). Rather than copy
those functions, async mode runs them as they are, once, in a worker thread (vinyl.worker), in
sync mode as any sync code: vinyl's compile-only connections are installed for that thread, and
every vinyl operation started there (a compiler's ``vinyl_execute_sql()`` when Django's code
reaches a query, a vinyl queryset's ``count()`` in user code such as ``on_delete=SET(callable)``)
is handed, not started, to the calling task, which runs it on the event loop and hands back its
value (or raises its error where the call stood). So the function, and the user code inside it,
runs exactly as often as in Django's own sync call, and no answer can ever be given to the wrong
query. :func:`call_sync_code` runs user code the same way (a synchronous ``save()`` override).

A function whose first query is its last step (``get_aggregation``, behind ``count()`` and
``aggregate()``) needs no thread: it runs on the loop up to that query (the compiler raises
:class:`NeedsQuery`), and the caller finishes from the answer (*finish*).

Sync mode calls the functions directly: there Django runs its own queries on its own connection.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connections

from ..db.worker import Call
from ..db.wrapper import compile_wrapper, is_postgresql
from ..flags import is_async, reset_async, set_async
from ..futures import maybe_async
from ..futures.driver import _sync_runner, reset_sync_runner, set_sync_runner
from ..futures.shields import shielded
from . import compilers
from .tape import _FINISH, NeedsQuery, _tape

__all__ = ["call_sync_code", "call_with_io", "in_worker"]


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
                    wrapper = compile_wrapper(alias)
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
    """The worker thread's setting: sync mode, as for any sync code, with vinyl's compile-only
    connections installed and every vinyl operation started there (Django's queries included,
    through vinyl's compilers) run by the calling task (*call*)."""
    # Auto mode: sync here (no loop runs in the thread), async in a loop user code starts.
    runner, mode = set_sync_runner(call.run), set_async(None)
    try:
        with _Installed():
            yield
    finally:
        reset_async(mode)
        reset_sync_runner(runner)


def in_worker() -> bool:
    """Whether this code runs in vinyl's worker thread for an async-mode caller."""
    return _sync_runner.get() is not None


@maybe_async
def call_sync_code(func: Callable[[], Any]):
    """Return ``func()``, synchronous code that may do I/O (a model's ``save()`` override).

    Sync mode calls it. Async mode runs it once in a worker thread, in sync mode as any sync
    code is, with every vinyl operation it starts and every query of Django's ORM it runs handed
    to the calling task: they run on the event loop, in the task's transaction (its pinned
    connection), and their values or errors come back to *func* where it called them. So *func*
    runs exactly as Django runs it, once; what it returns is returned (awaited, if awaitable).
    """
    if not is_async():
        return func()
    result = yield _serve(Call(func, _in_worker))
    return result


@maybe_async
def call_with_io(func: Callable[[], Any], finish: Callable[[Any, Any], Any] | None = None):
    """Return ``func()``; in async mode, run it once with its queries run on the event loop.

    *finish* is for a function whose first query is its last step (``Query.get_aggregation``):
    async mode then runs *func* on the loop up to that query and returns
    ``finish(compiler, answer)`` (no thread, one compilation).
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
    return (yield _serve(Call(func, _in_worker)))


@maybe_async
def _serve(call: Call):
    """Run the worker's queries and operations until its function returns; return its value."""
    pending = None
    try:
        while True:
            kind, payload = yield call.next()
            if kind != "run":
                break
            work, _, pending = payload
            try:
                result = yield work
            except Exception as exc:
                pending.set_exception(exc)  # raised where the query stood, as in Django
            else:
                pending.set_result(result)
            pending = None
    except GeneratorExit:
        call.abandon(pending).close()  # closed unfinished: the thread unwinds on its own
        raise
    except BaseException:
        # Cancelled while the function runs: let the thread unwind first, so no query of it
        # outlives this call.
        yield shielded(call.abandon(pending))
        raise
    if kind == "error":
        raise payload
    return payload
