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
uses these pools: it runs on Django's own connection.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from typing import Any

import psycopg
from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.db.utils import OperationalError
from psycopg import IsolationLevel
from psycopg.types import TypeInfo
from psycopg.types.hstore import register_hstore
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from ..compat import mirrors
from ..futures.shields import shielded
from .wrapper import compile_wrapper, sql_connection

__all__ = ["PoolExhausted", "begin_statement", "close_pools", "get_pool", "getconn"]

TIMESTAMPTZ_OID = psycopg.adapters.types["timestamptz"].oid
# psycopg's timestamptz loader in its C version when psycopg_binary (or psycopg_c) is installed.
_PsycopgTimestamptzLoader = psycopg.adapters.get_loader(TIMESTAMPTZ_OID, psycopg.pq.Format.TEXT)

DEFAULT_POOL = {"min_size": 1, "max_size": 10, "timeout": 30.0, "reconnect_timeout": 0.0}
# libpq waits 130 s for an unreachable host without connect_timeout: async mode's pools give up
# after this many seconds unless DATABASES[alias]["OPTIONS"] sets connect_timeout.
DEFAULT_CONNECT_TIMEOUT = 5


class PoolExhausted(OperationalError):
    """No pooled connection became free within the pool's timeout."""


class _Pool(AsyncConnectionPool):
    """psycopg_pool's pool, failing its waiting clients at once when a connection can't be made.

    psycopg_pool retries a failed connection attempt in the background (with growing delays)
    and lets its clients wait for the pool's whole ``timeout``, then raises ``PoolTimeout``
    without the server's message. A server that is down or refuses vinyl's parameters should
    give Django's ``OperationalError`` with libpq's message as soon as libpq gives up (within
    ``connect_timeout``), as Django's own connection does; so a failed attempt is handed to every
    client waiting at that moment, and the next request tries again at once (``reconnect_timeout``
    is 0 unless DATABASES[alias]["VINYL"] sets it).
    """

    vinyl_name: Any = None  # settings_dict["NAME"] when the pool was made

    async def _connect(self, timeout: float | None = None) -> Any:
        try:
            return await super()._connect(timeout)
        except Exception as exc:
            async with self._lock:
                waiting = list(self._waiting)
                self._waiting.clear()
            for client in waiting:
                await client.fail(exc)
            raise


class _ReportedToCallers(logging.Filter):
    """Keep psycopg_pool from logging failed connection attempts of vinyl's pools.

    vinyl raises them to the callers instead (see _Pool); a cancelled attempt (the loop
    shutting down) is no error at all.
    """

    MESSAGES = frozenset(
        {"error connecting in %r: %s", "reconnection attempt in pool %r failed after %s sec"}
    )

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        return not (
            record.msg in self.MESSAGES
            and isinstance(args, tuple)
            and str(args[0]).startswith(POOL_NAME_PREFIX)
        )


POOL_NAME_PREFIX = "vinyl-"
_log_filter = _ReportedToCallers()
logging.getLogger("psycopg.pool").addFilter(_log_filter)


class _Pools:
    """The pools of one event loop, keyed by alias."""

    def __init__(self) -> None:
        self.pools: dict[str, AsyncConnectionPool] = {}
        self.lock = asyncio.Lock()
        self.closer: asyncio.Task[None] | None = None
        self.tests: Any = None  # vinyl.db.testdb's state in a test run


async def _close_at_shutdown(pools: _Pools) -> None:
    """Wait until the loop shuts down (it cancels every task), then close the loop's pools.

    Without this, ``asyncio.run(main())`` would hang at exit when a pool is still open: the
    runner cancels the pool's workers, and a worker cancelled while connecting takes that for a
    failed connection attempt and tries again.
    """
    loop = asyncio.get_running_loop()
    try:
        await loop.create_future()
    finally:
        # The entry refers to the loop (through its tasks and pools): drop it, or the weak
        # mapping keeps every loop that ever opened a pool alive.
        with _by_loop_lock:
            if _by_loop.get(loop) is pools:
                del _by_loop[loop]
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


_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Pools] = weakref.WeakKeyDictionary()
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
    check = (
        AsyncConnectionPool.check_connection if settings_dict.get("CONN_HEALTH_CHECKS") else None
    )
    options = {**DEFAULT_POOL, "check": check, **(settings_dict.get("VINYL") or {})}
    if options.get("max_size") is not None and options["max_size"] < options["min_size"]:
        options["min_size"] = options["max_size"]
    return options


def begin_statement(alias: str) -> str:
    """Return the BEGIN statement for *alias*, with its OPTIONS["isolation_level"] if any."""
    settings_dict = connections.settings[alias]
    level = _isolation_level(alias, settings_dict)
    return "BEGIN" if level is None else f"BEGIN ISOLATION LEVEL {level.name.replace('_', ' ')}"


@mirrors("django.db.backends.postgresql.base:DatabaseWrapper.get_new_connection")
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


@mirrors("django.contrib.postgres.signals:register_type_handlers")
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


# Valid while Django's loader is psycopg's plus ``.replace(tzinfo=timezone)``.
@mirrors(
    "django.db.backends.postgresql.psycopg_any:BaseTzLoader",
    "django.db.backends.postgresql.psycopg_any:register_tzloader",
)
def _with_fast_timestamptz(context: psycopg.adapt.AdaptersMap) -> psycopg.adapt.AdaptersMap:
    """Return a copy of Django's adapters whose timestamptz loader skips Django's Python step
    when that step changes nothing.

    Django loads timestamptz with psycopg's loader, then, in Python, for every value, replaces
    the tzinfo with its connection's time zone (``BaseTzLoader``). Where the session's time zone,
    as psycopg reads it when a result's loaders are made, *is* that tzinfo (Django keeps them
    equal; ``USE_TZ`` gives UTC on both sides), psycopg's own loader returns the very same
    datetimes, in C: this one returns it then, and Django's loader otherwise (``USE_TZ = False``,
    or a ``SET TIME ZONE`` of the session), so values are always Django's.
    """
    django_loader = context.get_loader(TIMESTAMPTZ_OID, psycopg.pq.Format.TEXT)
    django_tz = getattr(django_loader, "timezone", None)
    if django_tz is None:
        return context  # naive datetimes (USE_TZ = False), or not Django's loader

    class TimestamptzLoader(django_loader):  # type: ignore[misc, valid-type]
        def __new__(cls, oid: int, context: Any = None) -> Any:
            conn = getattr(context, "connection", None)
            if conn is not None and conn.info.timezone is django_tz:
                return _PsycopgTimestamptzLoader(oid, context)
            return django_loader(oid, context)

    adapters = psycopg.adapt.AdaptersMap(context)
    adapters.register_loader(TIMESTAMPTZ_OID, TimestamptzLoader)
    return adapters


@mirrors(
    "django.db.backends.postgresql.base:DatabaseWrapper.get_connection_params",
    "django.db.backends.postgresql.base:DatabaseWrapper._configure_connection",
)
async def _make_pool(alias: str) -> AsyncConnectionPool:
    wrapper = sql_connection(alias)
    settings_dict = wrapper.settings_dict
    kwargs = wrapper.get_connection_params()
    kwargs["context"] = _with_fast_timestamptz(kwargs["context"])
    kwargs["autocommit"] = True
    kwargs.setdefault("connect_timeout", DEFAULT_CONNECT_TIMEOUT)
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
    pool = _Pool(
        kwargs=kwargs,
        configure=configure,
        open=False,
        name=f"{POOL_NAME_PREFIX}{alias}",
        **options,
    )
    pool.vinyl_name = settings_dict["NAME"]  # see discard_stale_pool()
    try:
        await pool.open()
        if "pg_version" not in wrapper.__dict__:
            conn = await _checkout(alias, pool)
            try:
                wrapper.__dict__["pg_version"] = conn.info.server_version
            finally:
                await pool.putconn(conn)
    except BaseException:
        # The creating task was cancelled (or the server is unreachable): nobody will ever see
        # this pool, so close it, or the connections it opened meanwhile leak.
        await shielded(pool.close())
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


async def discard_stale_pool(alias: str) -> None:
    """Close the loop's pool of *alias* if it connects to another database than the settings
    name now (one opened before the test database was set up)."""
    pool = _open_pool(alias)
    if pool is not None and pool.vinyl_name != compile_wrapper(alias).settings_dict["NAME"]:
        pools = _loop_pools()
        if pools.pools.get(alias) is pool:
            del pools.pools[alias]
        await pool.close()


async def getconn(alias: str) -> tuple[psycopg.AsyncConnection, AsyncConnectionPool]:
    pool = _open_pool(alias)  # no coroutine once the pool is open
    if pool is None:
        pool = await get_pool(alias)
    return await _checkout(alias, pool), pool


async def _checkout(alias: str, pool: AsyncConnectionPool) -> psycopg.AsyncConnection:
    """``pool.getconn()``, with Django's errors: the server's own when it can't be reached."""
    # Django's classes for psycopg's errors (libpq's message kept); PoolTimeout is one too, so
    # it is told apart first.
    with compile_wrapper(alias).wrap_database_errors:
        try:
            return await pool.getconn()
        except PoolTimeout as exc:
            raise _timeout_error(alias, pool) from exc


def _timeout_error(alias: str, pool: AsyncConnectionPool) -> OperationalError:
    if pool.get_stats().get("pool_size", 0) < pool.max_size:
        return OperationalError(
            f"Could not open a connection to database {alias!r} within {pool.timeout:g} s "
            "(the server did not answer; check HOST and PORT, or raise OPTIONS "
            "['connect_timeout'] if it is slow to accept connections)."
        )
    return PoolExhausted(
        f"All {pool.max_size} connections of database {alias!r} were in use for "
        f"{pool.timeout:g} s. Raise DATABASES[{alias!r}]['VINYL']['max_size'] or "
        "['timeout'], or hold connections for less time (long transactions or streams)."
    )


async def close_pools(alias: str | None = None) -> None:
    """Close the pools of the running event loop (all aliases, or one)."""
    pools = _by_loop.get(asyncio.get_running_loop())
    if pools is None:
        return
    for name in [alias] if alias else list(pools.pools):
        pool = pools.pools.pop(name, None)
        if pool is not None:
            await pool.close()
