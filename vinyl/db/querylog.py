"""Seeing vinyl's statements: Django's SQL log, query list and execute wrappers, in both modes.

Every statement vinyl runs passes through :func:`observed` (from ``connection.run_on``, a stream's
``DECLARE`` and an async transaction's ``BEGIN``/``SAVEPOINT``/``COMMIT`` …). When nothing watches,
that costs one contextvar read, plus in async mode a look at Django's connection of the alias.

Sync mode runs on Django's own cursor (a ``CursorDebugWrapper`` when ``DEBUG`` is on), which logs,
lists and wraps the statement itself, so only vinyl's own watchers apply here. Async mode never
touches Django's cursor, so this module does for it what Django's ``CursorDebugWrapper.debug_sql``
and ``debug_transaction`` do, on Django's connection object of the alias that the issuing code
sees (``from django.db import connection``; one per thread, and in async code one per context):

* when ``connection.queries_logged`` (``DEBUG`` or ``force_debug_cursor``): append
  ``{"sql", "time"}`` to ``connection.queries_log`` (Django's bounded deque; ``reset_queries()``
  clears it) and emit the ``django.db.backends`` DEBUG record with Django's message and ``extra``;
* call the wrappers of ``connection.execute_wrapper()``. Django's wrappers are synchronous, so in
  async mode they run *before* the statement: their ``execute(sql, params, many, context)``
  records what it is given and returns None, then vinyl awaits the statement with that SQL and
  those parameters. A wrapper that rewrites the SQL rewrites what runs; one that raises stops the
  statement; one that needs the result or the time taken needs :func:`execute_wrapper` instead.

:func:`execute_wrapper` (both modes, scoped to the current context) and :func:`capture_queries`
are vinyl's own; ``vinyl.requestlog`` records per request through the same hook.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from django.conf import settings
from django.core.signals import request_started
from django.db import connections

from ..compat import mirrors
from ..futures import maybe_async

__all__ = ["capture_queries", "execute_wrapper", "observed"]

logger = logging.getLogger("django.db.backends")

# Transaction control. In sync mode Django runs it (vinyl's watchers never see it), so vinyl's
# wrappers skip it in both modes; query logs record it in async mode but never count it as N+1.
TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE SAVEPOINT")


def _django_transaction_statement(sql: Any) -> bool:
    """BEGIN, COMMIT, ROLLBACK: Django logs these through debug_transaction (no params, no
    wrappers); savepoints go through its cursor like any statement."""
    return isinstance(sql, str) and (sql in ("COMMIT", "ROLLBACK") or sql.startswith("BEGIN"))


class _Watch:
    """What watches the statements of the current context (immutable; replaced on change)."""

    __slots__ = ("recorders", "wrappers")

    def __init__(self, recorders: tuple[Any, ...], wrappers: tuple[Callable[..., Any], ...]):
        self.recorders = recorders
        self.wrappers = wrappers


_watch: contextvars.ContextVar[_Watch | None] = contextvars.ContextVar("vinyl_watch", default=None)


def watching(recorder: Any = None, wrapper: Any = None) -> contextvars.Token[_Watch | None]:
    """Add a recorder (``.record(sql, params, duration, alias)``) or a wrapper to this context.

    Undo with ``_watch.reset(token)``.
    """
    old = _watch.get()
    recorders = old.recorders if old else ()
    wrappers = old.wrappers if old else ()
    if recorder is not None:
        recorders += (recorder,)
    if wrapper is not None:
        wrappers += (wrapper,)
    return _watch.set(_Watch(recorders, wrappers))


def observed(execute: Callable[..., Any], handle: Any, sql: Any, params: Any, *args: Any) -> Any:
    """Return ``execute(handle, sql, params, *args)`` (maybe-async), seen by whoever watches.

    *handle* has ``alias``, ``conn`` (async mode) and ``observed_by_django`` (true when the
    statement runs on Django's own cursor, which logs and wraps it itself).
    """
    watch = _watch.get()
    if watch is None and (handle.observed_by_django or _watching_connection(handle.alias) is None):
        return execute(handle, sql, params, *args)
    if watch is None or not watch.wrappers:
        return _run(watch, execute, handle, sql, params, args)
    return _observe(watch, execute, handle, sql, params, args)


def _watching_connection(alias: str) -> Any:
    """Django's connection object of *alias* here if it logs or wraps statements, else None."""
    if settings.DEBUG:
        return connections[alias]
    # Without creating one: in async code Django keeps a connection object per context (asgiref's
    # thread-critical Local), and a request task that never touched one has none to look at.
    conn = getattr(connections._connections, alias, None)
    if conn is not None and (conn.execute_wrappers or conn.force_debug_cursor):
        return conn
    return None


@maybe_async
def _observe(watch: _Watch, execute: Any, handle: Any, sql: Any, params: Any, args: Any):
    wrappers = watch.wrappers
    if isinstance(sql, str) and sql.startswith(TRANSACTION_CONTROL):
        return (yield _run(watch, execute, handle, sql, params, args))

    def innermost(sql: Any, params: Any, many: bool, context: dict[str, Any]) -> Any:
        return _run(watch, execute, handle, sql, params, args)

    chain = innermost
    for wrapper in reversed(wrappers):
        chain = functools.partial(wrapper, chain)
    context = {"connection": connections[handle.alias], "cursor": None, "alias": handle.alias}
    return (yield chain(sql, params, _is_many(args), context))


@maybe_async
def _run(watch: _Watch | None, execute: Any, handle: Any, sql: Any, params: Any, args: Any):
    django = None if handle.observed_by_django else _watching_connection(handle.alias)
    control = _django_transaction_statement(sql)
    start = time.monotonic()
    try:  # as in Django's debug cursor, a statement a wrapper refused is logged too
        if django is not None and django.execute_wrappers and not control:
            sql, params = _call_django_wrappers(django, sql, params, _is_many(args))
        return (yield execute(handle, sql, params, *args))
    finally:
        duration = time.monotonic() - start
        if django is not None and django.queries_logged:
            _debug_sql(django, handle, sql, params, duration, control, args)
        if watch is not None:
            for recorder in watch.recorders:
                recorder.record(sql, params, duration, handle.alias)


def _is_many(args: Any) -> bool:
    # run_on's result kind "many" (db.connection.MANY) is an executemany().
    return bool(args) and args[0] == "many"


class _WrapperSkipped(RuntimeError):
    pass


@mirrors("django.db.backends.utils:CursorWrapper._execute_with_wrappers")
def _call_django_wrappers(conn: Any, sql: Any, params: Any, many: bool) -> tuple[Any, Any]:
    """Run Django's (synchronous) execute wrappers; return the SQL and params to execute."""
    seen: list[tuple[Any, Any]] = []

    def execute(sql: Any, params: Any, many: bool, context: dict[str, Any]) -> None:
        seen.append((sql, params))  # the statement itself is awaited once the wrappers return

    executor: Callable[..., Any] = execute
    for wrapper in reversed(conn.execute_wrappers):
        executor = functools.partial(wrapper, executor)
    executor(sql, params, many, {"connection": conn, "cursor": None})
    if not seen:
        raise _WrapperSkipped(
            f"An execute wrapper of connections[{conn.alias!r}] returned without calling "
            "execute(): in async mode vinyl cannot skip a statement and return nothing. Raise an "
            "exception to stop the statement instead."
        )
    return seen[-1]


# Django's connections into which async statements were logged: request_started clears them
# (see _reset_async_queries), from another thread, hence the lock.
_logged: weakref.WeakSet[Any] = weakref.WeakSet()
_logged_lock = threading.Lock()


@mirrors(
    "django.db.backends.utils:CursorDebugWrapper.debug_sql",
    "django.db.backends.utils:debug_transaction",
)
def _debug_sql(
    conn: Any, handle: Any, sql: Any, params: Any, duration: float, control: bool, args: Any
) -> None:
    """Do what Django's CursorDebugWrapper.debug_sql (or debug_transaction) does."""
    if conn not in _logged:
        with _logged_lock:
            _logged.add(conn)
    if control:
        conn.queries_log.append({"sql": str(sql), "time": f"{duration:.3f}"})
        logger.debug(
            "(%.3f) %s; args=%s; alias=%s",
            duration,
            sql,
            None,
            conn.alias,
            extra={"duration": duration, "sql": sql, "alias": conn.alias},
        )
        return
    sql = _last_executed_query(handle, sql, params, args)
    conn.queries_log.append({"sql": sql, "time": f"{duration:.3f}"})
    logger.debug(
        "(%.3f) %s; args=%s; alias=%s",
        duration,
        sql,
        params,
        conn.alias,
        extra={"duration": duration, "sql": sql, "params": params, "alias": conn.alias},
    )


def _last_executed_query(handle: Any, sql: Any, params: Any, args: Any) -> Any:
    """The statement with its parameters bound, as Django's ``ops.last_executed_query`` gives."""
    # A stream passes its server-side cursor: psycopg ran DECLARE ... FOR <sql>, which is what
    # Django logs for its own chunked cursor.
    query = getattr(args[0], "_query", None) if args else None
    if query is not None and query.query is not None:
        return query.query.decode()
    if params is None:
        return sql
    try:
        return psycopg.AsyncClientCursor(handle.conn).mogrify(sql, params)
    except Exception:  # never fail a statement over its log line
        return sql


def _reset_async_queries(sender: Any, **kwargs: Any) -> None:
    # Under ASGI Django sends request_started with asend(), which runs reset_queries() in a worker
    # thread: it clears that thread's connections, not those of the event loop's thread, where
    # async statements are listed. So clear those too (ASGI requests only, as the scope says).
    if "scope" in kwargs:
        with _logged_lock:
            logged = list(_logged)
        for conn in logged:
            conn.queries_log.clear()


request_started.connect(_reset_async_queries, dispatch_uid="vinyl.querylog.reset_async_queries")


@contextmanager
def execute_wrapper(wrapper: Callable[..., Any]) -> Iterator[None]:
    """Wrap every statement vinyl runs in this context (both modes), as Django's
    ``connection.execute_wrapper()`` does for one connection.

    ``wrapper(execute, sql, params, many, context)`` must return ``execute(sql, params, many,
    context)``'s result (it may change the SQL or parameters first, or raise). In sync mode
    ``execute()`` returns the result; in async mode it returns an awaitable, so write the wrapper
    as an ``async def`` that awaits it, or as a ``@maybe_async`` generator (``result = yield
    execute(...)``) to serve both modes. ``context`` holds ``connection`` (Django's connection of
    the alias for this thread), ``alias`` and ``cursor`` (None: vinyl's async cursor is not
    Django's). Unlike Django's, it applies to every alias and to the current context only (the
    task or thread, and what they start), so concurrent requests can wrap differently. It does
    not see transaction control (BEGIN, SAVEPOINT, COMMIT …), which Django runs in sync mode.
    """
    token = watching(wrapper=wrapper)
    try:
        yield
    finally:
        _watch.reset(token)


class _Captured(list):
    def record(self, sql: Any, params: Any, duration: float, alias: str) -> None:
        self.append((str(sql), params))


@contextmanager
def capture_queries() -> Iterator[list[tuple[str, Any]]]:
    """Record ``(sql, params)`` of every statement vinyl runs in this context (both modes)."""
    log = _Captured()
    token = watching(recorder=log)
    try:
        yield log
    finally:
        _watch.reset(token)
