"""Async connection pools: one ``psycopg_pool.AsyncConnectionPool`` per (database alias, loop).

Pools are configured from ``settings.DATABASES[alias]`` with the same connection parameters,
adapters (timezone included), cursor class, role and isolation level as Django's psycopg 3 backend,
so a value read through vinyl equals the value Django reads. Pool sizing lives under the alias's
``"VINYL"`` key::

    DATABASES = {"default": {..., "VINYL": {"min_size": 2, "max_size": 10, "timeout": 30}}}

Every key of that dict is passed to ``AsyncConnectionPool`` (``max_lifetime``, ``max_idle``,
``reconnect_timeout``, ``check`` …). ``check`` follows Django's ``CONN_HEALTH_CHECKS`` for the
alias, as Django's own pool does: when true, a connection is tested (one empty statement, a round
trip) before it is lent, so one that died while idle is replaced instead of failing the operation
that gets it. Off by default: the round trip costs about a third of a simple query's throughput,
and without it a dead connection fails one operation, is discarded and replaced. Sync mode never
uses these pools: it runs on Django's own
connection.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import threading
import types
import weakref
from collections.abc import Coroutine, Generator
from typing import Any, TypeVar

import anyio
import psycopg
from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.db.backends.postgresql.base import DatabaseWrapper as PGDatabaseWrapper
from django.db.utils import OperationalError, load_backend
from psycopg import IsolationLevel
from psycopg.client_cursor import ClientCursorMixin
from psycopg.types import TypeInfo
from psycopg.types.hstore import register_hstore
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from .flags import is_async

__all__ = ["PoolExhausted", "close_pools", "get_pool", "shielded", "sql_connection"]

T = TypeVar("T")

DEFAULT_POOL = {"min_size": 1, "max_size": 10, "timeout": 30.0}


class PoolExhausted(OperationalError):
    """No pooled connection became free within the pool's timeout."""


class AsyncServerSideCursor(ClientCursorMixin, psycopg.AsyncServerCursor):
    """A named cursor with client-side binding, as Django's ``ServerSideCursor`` (ticket #20516)."""


def _compile_wrapper_class(backend_class: type) -> type:
    ops_class = type(
        "VinylOperations", (backend_class.ops_class,), {"compiler_module": "vinyl.compiler"}
    )

    class CompileWrapper(backend_class):  # type: ignore[misc, valid-type]
        """Django's DatabaseWrapper for SQL generation in async mode; it never connects.

        Its operations use vinyl's compilers (``compiler_module``), so Django code that compiles
        a query with it (see vinyl.replay) reaches vinyl's execution path.
        """

        def get_autocommit(self) -> bool:
            from .transaction import current_pin  # the pinned transaction decides

            return current_pin(self.alias) is None

        def ensure_connection(self) -> None:
            raise RuntimeError(
                "vinyl's async-mode SQL compiler tried to use Django's sync connection for "
                f"alias {self.alias!r}; this is a vinyl bug, please report it."
            )

    CompileWrapper.ops_class = ops_class

    return CompileWrapper


_compile_wrappers: dict[str, Any] = {}
_wrapper_lock = threading.Lock()


def sql_connection(alias: str) -> Any:
    """Return the DatabaseWrapper that compiles SQL for *alias* in the current mode.

    Sync mode: Django's own connection (it also runs the query). Async mode: a wrapper that shares
    Django's operations, features and quoting but never opens a connection of its own.
    """
    if not is_async():
        return connections[alias]
    return compile_wrapper(alias)


def compile_wrapper(alias: str) -> Any:
    """Return async mode's compile-only DatabaseWrapper for *alias* (see sql_connection)."""
    try:
        return _compile_wrappers[alias]
    except KeyError:
        pass
    with _wrapper_lock:
        if alias not in _compile_wrappers:
            settings_dict = connections.settings[alias]
            backend = load_backend(settings_dict["ENGINE"])
            if not issubclass(backend.DatabaseWrapper, PGDatabaseWrapper):
                raise ImproperlyConfigured(
                    f"vinyl's async mode needs a PostgreSQL database; DATABASES[{alias!r}] uses "
                    f"{settings_dict['ENGINE']!r}."
                )
            cls = _compile_wrapper_class(backend.DatabaseWrapper)
            _compile_wrappers[alias] = cls(settings_dict, alias)
        return _compile_wrappers[alias]


# -- pools -------------------------------------------------------------------------------------


class _Pools:
    """The pools of one event loop, keyed by alias."""

    def __init__(self) -> None:
        self.pools: dict[str, AsyncConnectionPool] = {}
        self.lock = asyncio.Lock()
        self.closer: asyncio.Task[None] | None = None


async def _close_at_shutdown(pools: _Pools) -> None:
    """Wait until the loop shuts down (it cancels every task), then close the loop's pools.

    Without this, ``asyncio.run(main())`` would hang at exit when a pool is still open: the
    runner cancels the pool's workers, and a worker cancelled while connecting takes that for a
    failed connection attempt and tries again.
    """
    try:
        await asyncio.get_running_loop().create_future()
    finally:
        while pools.pools:
            _, pool = pools.pools.popitem()
            # The runner has cancelled the pool's workers too, so pool.close() stops with
            # CancelledError before closing its idle connections: close those ourselves.
            idle = list(getattr(pool, "_pool", ()))
            try:
                await pool.close(timeout=1.0)
            except asyncio.CancelledError:
                pass
            finally:
                for conn in idle:
                    if not conn.closed:
                        await conn.close()


_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Pools] = (
    weakref.WeakKeyDictionary()
)
_by_loop_lock = threading.Lock()


def _loop_pools() -> _Pools:
    loop = asyncio.get_running_loop()
    pools = _by_loop.get(loop)
    if pools is None:
        with _by_loop_lock:
            pools = _by_loop.setdefault(loop, _Pools())
    if pools.closer is None:
        pools.closer = loop.create_task(_close_at_shutdown(pools), name="vinyl-pool-closer")
    return pools


def _pool_options(alias: str, settings_dict: dict[str, Any]) -> dict[str, Any]:
    check = AsyncConnectionPool.check_connection if settings_dict.get("CONN_HEALTH_CHECKS") else None
    options = {**DEFAULT_POOL, "check": check, **(settings_dict.get("VINYL") or {})}
    if options.get("max_size") is not None and options["max_size"] < options["min_size"]:
        options["min_size"] = options["max_size"]
    return options


def begin_statement(alias: str) -> str:
    """Return the BEGIN statement for *alias*, with its OPTIONS["isolation_level"] if any."""
    settings_dict = connections.settings[alias]
    level = _isolation_level(alias, settings_dict)
    return "BEGIN" if level is None else f"BEGIN ISOLATION LEVEL {level.name.replace('_', ' ')}"


def _isolation_level(alias: str, settings_dict: dict[str, Any]) -> IsolationLevel | None:
    value = settings_dict["OPTIONS"].get("isolation_level")
    if value is None:
        return None
    try:
        return IsolationLevel(value)
    except ValueError:
        raise ImproperlyConfigured(
            f"Invalid transaction isolation level {value!r} in DATABASES[{alias!r}]['OPTIONS']. "
            "Use one of the psycopg.IsolationLevel values."
        ) from None


async def _register_contrib_postgres_types(conn: psycopg.AsyncConnection) -> None:
    """Load hstore as dict and citext[] as list, as django.contrib.postgres does on Django's
    connections (its connection_created receiver, which async connections never reach)."""
    cursor = await conn.execute(
        "SELECT typname, oid, typarray FROM pg_type WHERE typname IN ('hstore', 'citext')"
    )
    for name, oid, array_oid in await cursor.fetchall():
        if name == "hstore":
            register_hstore(TypeInfo("hstore", oid, array_oid), conn)
        else:
            TypeInfo("citext", 0, array_oid).register(conn)


async def _make_pool(alias: str) -> AsyncConnectionPool:
    wrapper = sql_connection(alias)
    settings_dict = wrapper.settings_dict
    kwargs = wrapper.get_connection_params()
    kwargs["autocommit"] = True
    server_binding = settings_dict["OPTIONS"].get("server_side_binding") is True
    kwargs["cursor_factory"] = psycopg.AsyncCursor if server_binding else psycopg.AsyncClientCursor
    timezone_name = wrapper.timezone_name
    role = settings_dict["OPTIONS"].get("assume_role")
    contrib_postgres = apps.is_installed("django.contrib.postgres")

    async def configure(conn: psycopg.AsyncConnection) -> None:
        # What Django's _configure_connection does on a sync connection.
        try:
            if timezone_name and conn.info.parameter_status("TimeZone") != timezone_name:
                await conn.execute(wrapper.ops.set_time_zone_sql(), [timezone_name])
            if role:
                await conn.execute(wrapper.ops.compose_sql("SET ROLE %s", [role]))
            if contrib_postgres:
                await _register_contrib_postgres_types(conn)
        except BaseException:
            # psycopg_pool drops a connection whose configure() failed without closing it (a
            # cancelled configure at loop shutdown, say): close it before the socket leaks.
            await conn.close()
            raise

    options = _pool_options(alias, settings_dict)
    pool = AsyncConnectionPool(
        kwargs=kwargs,
        configure=configure,
        open=False,
        name=f"vinyl-{alias}",
        **options,
    )
    try:
        await pool.open()
        if "pg_version" not in wrapper.__dict__:
            async with pool.connection() as conn:
                wrapper.__dict__["pg_version"] = conn.info.server_version
    except BaseException as exc:
        # The creating task was cancelled (or the server is unreachable): nobody will ever see
        # this pool, so close it, or the connections it opened meanwhile leak.
        await shielded(pool.close())
        if isinstance(exc, PoolTimeout):
            raise OperationalError(
                f"No connection to database {alias!r} could be made within {pool.timeout:g} s "
                "(DATABASES[...]['VINYL']['timeout']); is its server up?"
            ) from exc
        raise
    return pool


def _open_pool(alias: str) -> AsyncConnectionPool | None:
    """Return the running loop's pool of *alias* if it is open already (the common case)."""
    pools = _by_loop.get(asyncio.get_running_loop())
    return None if pools is None else pools.pools.get(alias)


async def get_pool(alias: str) -> AsyncConnectionPool:
    """Return the pool of *alias* for the running event loop, opening it on first use."""
    pool = _open_pool(alias)
    if pool is None:
        pools = _loop_pools()
        async with pools.lock:
            pool = pools.pools.get(alias)
            if pool is None:
                pool = pools.pools[alias] = await _make_pool(alias)
    return pool


async def getconn(alias: str) -> tuple[psycopg.AsyncConnection, AsyncConnectionPool]:
    pool = _open_pool(alias)  # no coroutine once the pool is open
    if pool is None:
        pool = await get_pool(alias)
    try:
        conn = await pool.getconn()
    except PoolTimeout as exc:
        raise PoolExhausted(
            f"No connection of database {alias!r} became free within {pool.timeout:g} s "
            f"(pool max_size={pool.max_size}). Raise DATABASES[{alias!r}]['VINYL']['max_size'] "
            "or ['timeout'], or hold connections for less time."
        ) from exc
    return conn, pool


async def close_pools(alias: str | None = None) -> None:
    """Close the pools of the running event loop (all aliases, or one)."""
    pools = _by_loop.get(asyncio.get_running_loop())
    if pools is None:
        return
    for name in [alias] if alias else list(pools.pools):
        pool = pools.pools.pop(name, None)
        if pool is not None:
            await pool.close()


def _settle(proxy: asyncio.Future[None], _: asyncio.Future[Any]) -> None:
    if not proxy.done():
        proxy.set_result(None)


# The anyio shield scope a holder of the current task has entered, if any (see below).
_holder_scope: contextvars.ContextVar[anyio.CancelScope | None] = contextvars.ContextVar(
    "vinyl_holder_scope", default=None
)


@types.coroutine
def _hold_cancellation(coro: Coroutine[Any, Any, T], passes: int) -> Generator[Any, Any, T]:
    """Run *coro* in the calling task; let it see only the first *passes* cancellations.

    Later cancellations of the caller are held back until *coro* ends, then re-raised. While
    holding, the caller's task waits on a proxy of the future *coro* waits on, so that
    ``Task.cancel()`` (which cancels the future a task waits on) reaches the proxy only. It does
    with no task of its own what ``asyncio.shield`` does with one: a statement costs no extra
    trips round the event loop, and a clean-up that never waits costs nothing.
    """
    held: BaseException | None = None
    send: Any = None
    error: BaseException | None = None
    scope: anyio.CancelScope | None = None
    token: contextvars.Token[anyio.CancelScope | None] | None = None
    try:
        while True:
            try:
                if error is None:
                    waited = coro.send(send)
                else:
                    waited, error = coro.throw(error), None
            except StopIteration as stop:
                if held is not None:
                    raise held from None
                return stop.value
            except BaseException as exc:
                if held is not None and exc is not held:
                    raise held from exc
                raise
            send = None
            if passes:
                try:
                    send = yield waited
                except asyncio.CancelledError as exc:
                    passes -= 1
                    held = error = exc
                except BaseException as exc:
                    error = exc
                continue
            # Holding: the task waits on a proxy, so a cancellation cancels the proxy only.
            # anyio's cancel scopes deliver theirs again at every loop cycle: an anyio shield
            # keeps the task from waking for each. Only one holder of a task enters one at a time
            # (an inner holder waits first, so it would enter first and leave last otherwise).
            if scope is None and _holder_scope.get() is None:
                scope = anyio.CancelScope(shield=True)
                scope.__enter__()
                token = _holder_scope.set(scope)
            if not isinstance(waited, asyncio.Future):
                try:
                    send = yield waited  # a bare yield (asyncio.sleep(0))
                except asyncio.CancelledError as exc:
                    held = held or exc
                continue
            while not waited.done():
                proxy = waited.get_loop().create_future()
                waited.add_done_callback(functools.partial(_settle, proxy))
                try:
                    yield from proxy
                except asyncio.CancelledError as exc:
                    held = held or exc
    finally:
        if scope is not None:
            _holder_scope.reset(token)  # type: ignore[arg-type]
            scope.__exit__(None, None, None)


async def shielded(coro: Coroutine[Any, Any, T]) -> T:
    """Await *coro* to its end even if the calling task is cancelled meanwhile.

    Clean-up that talks to the server (COMMIT, ROLLBACK, handing a connection back to its pool)
    must not stop halfway. A cancellation of the caller (``Task.cancel()``, ``asyncio.timeout``,
    task groups, anyio's cancel scopes) is re-raised once *coro* has finished.
    """
    return await _hold_cancellation(coro, 0)


async def cancel_once(coro: Coroutine[Any, Any, T]) -> T:
    """Await *coro*; a cancellation of the caller cancels it once, then waits for its end.

    psycopg answers a cancelled query by cancelling it on the server and waiting for the
    server's reply. anyio's cancel scopes deliver a cancellation at every await until the scope
    exits, and a second one interrupts that wait: psycopg then closes the connection while the
    server goes on running the statement. Holding back later cancellations lets psycopg finish
    its clean-up whatever the caller receives meanwhile.
    """
    return await _hold_cancellation(coro, 1)


def guard(value: Any) -> Any:
    """Return *value*, a coroutine of a statement, guarded as :func:`cancel_once` does."""
    return _hold_cancellation(value, 1) if inspect.iscoroutine(value) else value
