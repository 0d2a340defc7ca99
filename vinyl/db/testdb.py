"""Async mode inside a test run: Django's access guards, the test database, the test's transaction.

Active only while Django's test environment is set up (``setup_test_environment()``, which every
test runner calls, pytest-django included: ``mail.outbox`` then exists); outside tests none of
this runs. Before async mode opens or uses anything of its own for an alias it:

* honours the guards on Django's connection for the test's thread: ``SimpleTestCase`` (and
  ``TestCase.databases``) replace ``connect`` on a forbidden connection, pytest-django's blocker
  replaces ``BaseDatabaseWrapper.ensure_connection``; vinyl calls the replacement, which raises
  the error Django's sync path would;
* replaces a pool opened before the test database was set up (its ``NAME`` differs);
* while that connection is inside a test's transaction (``TestCase``'s atomic blocks, which
  pytest-django's ``django_db`` also uses), runs on that connection's own server session, so
  rows written by either side are visible to the other and rolled back with the test.

The *test's thread* is the thread whose Django connection the test set up: the event loop's own
thread (vinyl's ``@both_modes``, anyio's and pytest-asyncio's runners), or, for a loop that
``async_to_sync`` started (Django's ``async def`` test methods), the sync thread that called it.

Sharing the session: psycopg wraps an existing libpq connection in the other mode
(``psycopg.AsyncConnection(pgconn)``). The async view is a :class:`~vinyl.db.transaction.Pin` of
the loop (one lock: one statement at a time on the session); async ``atomic()`` blocks on it are
savepoints, and their ``on_commit`` callbacks join Django's connection's, as in a sync test.
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
from asgiref.sync import AsyncToSync
from django.core.exceptions import SynchronousOnlyOperation
from django.db import connections
from psycopg.adapt import AdaptersMap

from .pins import current_pin, pin_task, test_block
from .pool import _loop_pools, discard_stale_pool, get_pool
from .transaction import Pin
from .wrapper import compile_wrapper

__all__ = ["prepare_in_tests"]


class _Sessions:
    """The test-run state of one event loop: the test thread's wrappers and session pins."""

    def __init__(self) -> None:
        self.wrappers: dict[str, Any] = {}
        self.pins: dict[str, Pin] = {}


def _sessions() -> _Sessions:
    pools = _loop_pools()
    if pools.tests is None:
        pools.tests = _Sessions()
    return pools.tests


async def _test_wrapper(alias: str, state: _Sessions) -> Any:
    """Return Django's connection for *alias* in the test's thread."""
    wrapper = state.wrappers.get(alias)
    if wrapper is None:
        loop = asyncio.get_running_loop()
        executor = AsyncToSync.loop_thread_executors.get(loop)
        if executor is None:
            wrapper = _sync_connection_of_this_thread(alias, loop)
        else:  # the sync thread that started this loop, waiting in async_to_sync
            wrapper = await loop.run_in_executor(executor, connections.__getitem__, alias)
        state.wrappers[alias] = wrapper
    return wrapper


def _sync_connection_of_this_thread(alias: str, loop: asyncio.AbstractEventLoop) -> Any:
    """Return ``connections[alias]`` as the sync code of this thread sees it.

    Django keeps connections in asgiref's thread-critical ``Local``, which gives code running
    under an event loop a storage of its own (a contextvar), apart from the thread's: the test's
    connection is the thread's. Looked up with the loop unset for the moment, as sync code
    sees it (``_set_running_loop`` is asyncio's hook for code that runs loops).
    """
    asyncio._set_running_loop(None)
    try:
        wrapper = connections[alias]
    finally:
        asyncio._set_running_loop(loop)
    if wrapper is compile_wrapper(alias):  # installed by vinyl.compiler.replay for its worker
        raise RuntimeError(
            "An event loop was started inside a Django function that vinyl's async mode runs in "
            "a worker thread (prefetching, deletion, in_bulk() …), and async mode was used on "
            "it: in a test run, that loop cannot reach the test's connection. Query with sync "
            "code there (Model.objects …): its queries run on the calling task."
        )
    return wrapper


def check_access(wrapper: Any) -> None:
    """Raise what Django's sync path raises if the test may not use *wrapper*'s database.

    The guards replace methods Django's connection calls before it connects; vinyl calls them
    the same way. Where no guard refuses, the call reaches Django's own ``ensure_connection``,
    which refuses to run in an event loop's thread before doing anything: that means allowed.
    """
    connect = wrapper.__dict__.get("connect")
    if connect is not None:
        from django.test.testcases import _DatabaseFailure

        if isinstance(connect, _DatabaseFailure):
            connect()  # DatabaseOperationForbidden, naming SimpleTestCase.databases
    try:
        wrapper.ensure_connection()  # pytest-django's blocker, TestCase's threaded-connection check
    except SynchronousOnlyOperation:
        pass


class BorrowedConnection(psycopg.AsyncConnection):
    """An async view of Django's sync connection's libpq session, for one test's transaction.

    It never closes or resets the session, which belongs to Django's connection, and keeps that
    connection's notice handlers, adapters (timezone, hstore …) and transaction state.
    """

    def __init__(self, sync_conn: psycopg.Connection, cursor_factory: Any) -> None:
        pgconn = sync_conn.pgconn
        handlers = (pgconn.notice_handler, pgconn.notify_handler)
        super().__init__(pgconn)
        pgconn.notice_handler, pgconn.notify_handler = handlers
        self.sync_conn = sync_conn
        self._adapters = AdaptersMap(sync_conn.adapters)
        self.cursor_factory = cursor_factory

    async def close(self) -> None:
        return None  # Django's connection closes the session

    def discard(self) -> None:
        """Drop what refers back to this view (vinyl.db.connection's statement cursor), so that
        a view no test uses any more is freed at once, not left in a reference cycle (Django's
        select_related tests check gc.garbage)."""
        vars(self).pop("_vinyl_cursor", None)

    def __del__(self) -> None:
        return None  # not open "by us": no ResourceWarning


async def prepare_in_tests(alias: str) -> None:
    """In a test run, before async mode uses *alias*: guards, test database, test transaction.

    Inside a test's transaction, the loop's pin on it becomes the task's pin for *alias* (as an
    ``atomic()`` block's would; tasks the task starts inherit it): statements outside vinyl's
    own blocks run on the test's session, one at a time (its lock).
    """
    state = _sessions()
    wrapper = await _test_wrapper(alias, state)
    check_access(wrapper)
    await discard_stale_pool(alias)
    if "pg_version" not in compile_wrapper(alias).__dict__:
        await get_pool(alias)
    block = test_block(wrapper)
    if block is None or current_pin(alias) is not None:
        return
    pin = state.pins.get(alias)
    if pin is None or pin.test_transaction_ended():
        if pin is not None:
            pin.conn.discard()
        server_binding = wrapper.settings_dict["OPTIONS"].get("server_side_binding") is True
        cursor_factory = psycopg.AsyncCursor if server_binding else psycopg.AsyncClientCursor
        pin = Pin(alias, BorrowedConnection(wrapper.connection, cursor_factory), None)
        pin.session, pin.test_block = wrapper, block
        state.pins[alias] = pin
    pin_task(alias, pin)  # for the rest of the task, until the test's transaction ends
