"""Database faults: backends killed mid-query and while idle in the pool, a server restart,
statement_timeout and lock_timeout. Failing operations raise Django's OperationalError or
InterfaceError, the pool replaces broken connections, and the process carries on.

A session killed inside an atomic() block (both modes) is tests/scenarios/test_transactions.py's
``test_connection_killed_inside_the_block``.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time

import pytest
from django.db import connections
from django.db.models.expressions import RawSQL
from django.db.utils import InterfaceError, OperationalError

from tests.helpers import ALIAS, pooled_pids, temporary_alias
from tests.pools import pool_settled
from tests.testapp.models import Author
from vinyl import atomic, maybe_async
from vinyl.connection import NO_RESULTS, SINGLE, run
from vinyl.db.pool import PoolExhausted, close_pools, get_pool
from vinyl.testing import both_modes

pytestmark = pytest.mark.anyio

DJANGO_ERRORS = (OperationalError, InterfaceError)
SLEEP = "pg_sleep(30)"


def sleeping(alias: str = ALIAS):
    """A queryset whose evaluation runs pg_sleep(30) on the server."""
    return Author.vinyl.using(alias).annotate(nap=RawSQL(f"SELECT {SLEEP}::text", ()))


async def kill_when_running(server, fragment: str, count: int = 1, timeout: float = 5.0) -> int:
    """Terminate the sessions running *fragment* once *count* of them run; return how many."""
    deadline = time.monotonic() + timeout
    while len(pids := server.running(fragment)) < count:
        assert time.monotonic() < deadline, "the statements never started"
        await asyncio.sleep(0.01)
    return server.terminate(pids)


async def test_backends_killed_mid_query(server, ann):
    """Killed while their queries run: each caller gets Django's error, the pool replaces the
    connections, and the next operations succeed."""
    tasks = [asyncio.create_task(sleeping().aget(name="Ann")) for _ in range(4)]
    killed = await kill_when_running(server, SLEEP, count=4)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert killed == 4
    assert all(type(r) in DJANGO_ERRORS for r in results), results
    assert all("terminat" in str(r) for r in results), results  # PostgreSQL's message
    stats = await pool_settled(ALIAS)
    assert stats["returns_bad"] == 4  # the broken connections were discarded
    names = await asyncio.gather(*(Author.vinyl.using(ALIAS).get(name="Ann") for _ in range(10)))
    assert [a.name for a in names] == ["Ann"] * 10
    await pool_settled(ALIAS)  # replacements may still be connecting
    assert all(state == "idle" for _, state, _ in server.sessions())
    await close_pools()


@pytest.fixture
def fifty(server):
    Author.objects.bulk_create(Author(name=f"a{i}") for i in range(50))
    connections["default"].close()


async def test_backend_killed_mid_stream(server, fifty):
    """A server-side cursor whose session dies between chunks: the stream raises, nothing leaks."""
    seen = 0
    with pytest.raises(DJANGO_ERRORS):
        async for _ in Author.vinyl.using(ALIAS).order_by("pk").iterator(chunk_size=10):
            seen += 1
            if seen == 15:
                pids = [pid for pid, _, query in server.sessions() if "FETCH" in query]
                assert server.terminate(pids) == 1
    assert seen == 20  # the chunk in hand, then the next FETCH failed
    await pool_settled(ALIAS)
    assert await Author.vinyl.using(ALIAS).count() == 50
    await close_pools()


async def test_idle_pooled_connections_killed_are_replaced_on_checkout(server, ann):
    """Connections killed while idle in the pool: with CONN_HEALTH_CHECKS (set on the reliability
    alias) the pool checks each on checkout and replaces dead ones, so no operation fails."""
    assert connections.settings[ALIAS]["CONN_HEALTH_CHECKS"]
    await asyncio.gather(*(Author.vinyl.using(ALIAS).count() for _ in range(30)))
    await pool_settled(ALIAS)
    pids = await pooled_pids(ALIAS)
    assert len(pids) >= 2
    assert server.terminate(pids) == len(pids)
    counts = await asyncio.gather(*(Author.vinyl.using(ALIAS).count() for _ in range(30)),
                                  return_exceptions=True)  # fmt: skip
    assert counts == [1] * 30
    assert set(await pooled_pids(ALIAS)).isdisjoint(pids)
    await close_pools()


async def test_without_health_checks_each_dead_idle_connection_fails_once(server):
    """By default (no CONN_HEALTH_CHECKS) a connection killed while idle fails the operation that
    gets it (Django's OperationalError); the pool then discards it and the operations after
    succeed."""
    with temporary_alias("nocheck", CONN_HEALTH_CHECKS=False, VINYL={"min_size": 3, "max_size": 3}):
        await asyncio.gather(*(Author.vinyl.using("nocheck").count() for _ in range(9)))
        await pool_settled("nocheck")
        pids = await pooled_pids("nocheck")
        assert len(pids) == 3 and server.terminate(pids) == 3
        results = [await _outcome(Author.vinyl.using("nocheck").count()) for _ in range(6)]
        assert [type(r) for r in results[:3]] == [OperationalError] * 3, results
        assert results[3:] == [0, 0, 0]
        await close_pools("nocheck")


async def _outcome(awaitable):
    try:
        return await awaitable
    except Exception as exc:
        return exc


# -- a private server restarted mid-run ---------------------------------------------------------


@pytest.fixture
def private_alias(private_server):
    """An alias on the private server, with testapp's Author table."""
    vinyl = {"min_size": 4, "max_size": 8, "timeout": 5}
    with temporary_alias("private", **private_server.url_kwargs, VINYL=vinyl) as alias:
        with connections[alias].schema_editor() as editor:
            editor.create_model(Author)
        connections[alias].close()
        yield alias


async def test_server_restart_mid_run(private_server, private_alias):
    """The server restarts while 40 tasks query it in a loop: operations during the outage fail
    at once with Django's errors (the pool does not make them wait while the server refuses
    connections); after it, all succeed on the same pools."""
    alias = private_alias
    if True:
        authors = Author.vinyl.using(alias)
        await authors.create(name="before")
        pool = await get_pool(alias)
        stop = asyncio.Event()
        outcomes: list[str] = []
        errors: list[BaseException] = []

        async def worker(i):
            rng = random.Random(i)
            while not stop.is_set():
                try:
                    async with atomic(using=alias):
                        await authors.create(name=f"w{i}")
                        await authors.filter(name=f"w{i}").count()
                    outcomes.append("ok")
                except DJANGO_ERRORS as exc:
                    outcomes.append("error")
                    errors.append(exc)
                await asyncio.sleep(rng.random() * 0.02)

        workers = [asyncio.create_task(worker(i)) for i in range(40)]
        await asyncio.sleep(0.5)
        ok_before = outcomes.count("ok")
        restart = threading.Thread(target=lambda: (private_server.stop(), private_server.start()))
        restart.start()
        while restart.is_alive():
            await asyncio.sleep(0.05)
        restarted_at = len(outcomes)
        await asyncio.sleep(1.5)
        stop.set()
        await asyncio.gather(*workers)
        after = outcomes[restarted_at:]
        assert ok_before > 0 and "error" in outcomes  # the outage was felt
        assert all(type(e) in DJANGO_ERRORS for e in errors), {type(e) for e in errors}
        assert not any(isinstance(e, PoolExhausted) for e in errors)  # the cause, not the pool
        # Once the server is back, every transaction commits: each dead connection fails at most
        # one transaction, then the pool discards and replaces it.
        settled = after[40:]
        assert settled and set(settled) == {"ok"}, after.count("error")
        committed = await authors.filter(name__startswith="w").count()
        assert committed == outcomes.count("ok")  # none of the failed ones left a row
        stats = await pool_settled(alias)
        assert stats["pool_size"] <= 8
        print(f"restart: {outcomes.count('ok')} transactions committed, "
              f"{outcomes.count('error')} failed with {sorted({type(e).__name__ for e in errors})}; "
              f"pool {pool.get_stats()}")  # fmt: skip
        await close_pools(alias)


# -- timeouts ----------------------------------------------------------------------------------


@both_modes
def test_statement_timeout_set_in_a_transaction(server):
    before = server.counts()

    @atomic
    @maybe_async
    def slow():
        yield run("default", "SET LOCAL statement_timeout = '50ms'", None, NO_RESULTS)
        yield Author.vinyl.create(name="rolled back")
        yield run("default", "SELECT pg_sleep(5)", None, SINGLE)

    started = time.monotonic()
    with pytest.raises(OperationalError, match="canceling statement due to statement timeout"):
        yield slow()
    assert time.monotonic() - started < 3
    assert server.counts() == before
    assert (yield Author.vinyl.count()) == 0  # the connection works again


@both_modes
def test_statement_timeout_from_connection_options(server, ann, vinyl_mode):
    with temporary_alias("timeout", OPTIONS={"options": "-c statement_timeout=50"}) as alias:
        try:
            with pytest.raises(OperationalError, match="statement timeout") as info:
                yield sleeping(alias).first()
            assert type(info.value).__module__ == "django.db.utils"
            assert (yield Author.vinyl.using(alias).count()) == 1
        finally:
            if vinyl_mode == "sync":
                connections[alias].close()


@both_modes
def test_lock_timeout(server, ann):
    """A row locked by another session, lock_timeout 50 ms: Django's OperationalError with
    PostgreSQL's message, and the block rolled back."""
    author = ann
    other = server.conn.cursor()
    locker = type(server)()
    try:
        locker.conn.autocommit = False
        locker.conn.execute("SELECT 1 FROM testapp_author WHERE id = %s FOR UPDATE", [author.pk])

        @atomic
        @maybe_async
        def update():
            yield run("default", "SET LOCAL lock_timeout = '50ms'", None, NO_RESULTS)
            yield Author.vinyl.create(name="rolled back")
            yield Author.vinyl.filter(pk=author.pk).update(name="Bob")

        with pytest.raises(OperationalError, match="canceling statement due to lock timeout"):
            yield update()
    finally:
        locker.conn.rollback()
        locker.close()
        other.close()
    assert server.rows("SELECT name FROM testapp_author") == [("Ann",)]
    assert (yield Author.vinyl.filter(pk=author.pk).update(name="Bob")) == 1
