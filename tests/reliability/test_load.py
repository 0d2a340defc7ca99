"""Load: 2,000 concurrent tasks on a pool of 10 connections, and a pool that runs dry.

The alias ``reliability`` (tests/settings.py) is the test database with a pool of its own
(``max_size`` 10). A sampler watches the pool's statistics and pg_stat_activity while the tasks
run: the pool never holds more than ``max_size`` connections, and at the end each is idle.
"""

from __future__ import annotations

import asyncio
import random
import time

import psycopg
import pytest
from django.db import connections
from django.db.models import F, Sum
from django.db.utils import OperationalError

from tests.helpers import ALIAS, connect_kwargs
from tests.pools import pool_settled
from tests.testapp.models import Author, Book, Chapter
from vinyl import PoolExhausted, atomic
from vinyl.db.pool import close_pools, get_pool

pytestmark = pytest.mark.anyio

TASKS = 2000
POOL_MAX = 10
ACCOUNTS = 20
BALANCE = 1000
KINDS = ("read", "write", "transfer", "read in transaction")


@pytest.fixture
def accounts(server):
    """ACCOUNTS books whose pages are balances; transfers move pages between them."""
    author = Author.objects.create(name="bank")
    Book.objects.bulk_create(
        Book(author=author, title=f"account {i}", pages=BALANCE) for i in range(ACCOUNTS)
    )
    pks = list(Book.objects.order_by("pk").values_list("pk", flat=True))
    connections["default"].close()  # so every other session on the server is vinyl's
    return pks


async def _sampler(stop: asyncio.Event, pool, seen: dict[str, int], exclude: int) -> None:
    """Record the largest pool size, waiting queue and server session count until *stop*."""
    async with await psycopg.AsyncConnection.connect(**connect_kwargs(), autocommit=True) as conn:
        me = conn.info.backend_pid
        while not stop.is_set():
            stats = pool.get_stats()
            seen["pool_size"] = max(seen["pool_size"], stats["pool_size"])
            seen["waiting"] = max(seen["waiting"], stats.get("requests_waiting", 0))
            cursor = await conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND NOT pid = ANY(%s) AND backend_type = 'client backend'",
                [[me, exclude]],
            )
            (sessions,) = await cursor.fetchone()
            seen["sessions"] = max(seen["sessions"], sessions)
            seen["samples"] += 1
            await asyncio.sleep(0.005)


async def test_2000_concurrent_tasks_on_a_pool_of_10(server, accounts):
    assert connections.settings[ALIAS]["VINYL"]["max_size"] == POOL_MAX
    rng = random.Random(6)
    books = Book.vinyl.using(ALIAS)
    pool = await get_pool(ALIAS)
    assert pool.max_size == POOL_MAX
    done = {kind: 0 for kind in KINDS}
    longest_wait = 0.0

    async def read(i):
        n = await books.filter(pages__gte=0).count()
        assert n == ACCOUNTS
        book = await books.get(pk=accounts[i % ACCOUNTS])
        assert book.title == f"account {i % ACCOUNTS}"

    async def write(i):
        author = await Author.vinyl.using(ALIAS).create(name=f"writer {i}")
        assert author.pk is not None

    async def transfer(i):
        src, dst = sorted(rng.sample(accounts, 2))  # a fixed lock order: no deadlocks
        async with atomic(using=ALIAS):
            rows = await books.select_for_update().filter(pk__in=[src, dst]).order_by("pk")
            assert [b.pk for b in rows] == [src, dst]
            await books.filter(pk=src).update(pages=F("pages") - 1)
            await books.filter(pk=dst).update(pages=F("pages") + 1)
            await Chapter.vinyl.using(ALIAS).create(book_id=src, number=i, title="transfer")

    async def read_in_transaction(i):
        async with atomic(using=ALIAS):
            total = await books.aggregate(total=Sum("pages"))
            assert total["total"] == ACCOUNTS * BALANCE  # committed transfers keep the sum
            assert await books.filter(pk=accounts[0]).exists()

    work = (read, write, transfer, read_in_transaction)

    async def task(i):
        nonlocal longest_wait
        await asyncio.sleep(rng.random() * 0.01)
        started = time.monotonic()
        await work[i % len(work)](i)
        longest_wait = max(longest_wait, time.monotonic() - started)
        done[KINDS[i % len(work)]] += 1

    seen = {"pool_size": 0, "waiting": 0, "sessions": 0, "samples": 0}
    stop = asyncio.Event()
    sampler = asyncio.create_task(_sampler(stop, pool, seen, server.pid))
    started = time.monotonic()
    try:
        results = await asyncio.gather(*(task(i) for i in range(TASKS)), return_exceptions=True)
    finally:
        stop.set()
        await sampler
    elapsed = time.monotonic() - started
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors[:5]
    assert sum(done.values()) == TASKS

    # Every write is there, every transfer kept the sum, nothing else changed.
    assert (
        await Author.vinyl.using(ALIAS).filter(name__startswith="writer ").count()
        == (done["write"])
    )
    assert await Chapter.vinyl.using(ALIAS).count() == done["transfer"]
    assert (await books.aggregate(total=Sum("pages")))["total"] == ACCOUNTS * BALANCE

    # The pool stayed within max_size, was saturated (tasks queued), and ends all idle.
    stats = await pool_settled(ALIAS)
    assert seen["samples"] > 10
    assert seen["pool_size"] <= POOL_MAX and stats["pool_max"] == POOL_MAX
    assert seen["sessions"] <= POOL_MAX  # on the server too (all but the observers')
    assert seen["waiting"] > POOL_MAX  # the test did exhaust the pool
    assert longest_wait < pool.timeout
    states = server.sessions()
    assert states and all(state == "idle" for _, state, _ in states), states
    assert len(states) == stats["pool_size"] <= POOL_MAX
    print(
        f"{TASKS} tasks ({done}) in {elapsed:.1f} s on a pool of {POOL_MAX}: "
        f"max pool size {seen['pool_size']}, max sessions {seen['sessions']}, max waiting "
        f"{seen['waiting']}, longest task {longest_wait:.2f} s; pool stats {stats}"
    )
    await close_pools()


@pytest.fixture
def short_timeout(server, monkeypatch):
    """The reliability alias with a pool timeout of 0.5 s."""
    vinyl = {**connections.settings[ALIAS]["VINYL"], "timeout": 0.5}
    monkeypatch.setitem(connections.settings[ALIAS], "VINYL", vinyl)
    return vinyl["timeout"]


async def test_pool_exhaustion_raises_pool_exhausted_naming_the_setting(server, short_timeout):
    release = asyncio.Event()
    entered = 0

    async def hold():
        nonlocal entered
        async with atomic(using=ALIAS):
            await Author.vinyl.using(ALIAS).exists()
            entered += 1
            await release.wait()

    holders = [asyncio.create_task(hold()) for _ in range(POOL_MAX)]
    try:
        while entered < POOL_MAX:
            await asyncio.sleep(0.01)
        before = server.counts()
        started = time.monotonic()
        with pytest.raises(PoolExhausted) as info:
            await Author.vinyl.using(ALIAS).create(name="no connection for me")
        waited = time.monotonic() - started
    finally:
        release.set()
        await asyncio.gather(*holders)
    assert isinstance(info.value, OperationalError)  # Django's class: except clauses catch it
    message = str(info.value)
    assert f"DATABASES['{ALIAS}']['VINYL']['max_size']" in message
    assert (
        "['timeout']" in message and "0.5 s" in message and f"All {POOL_MAX} connections" in message
    )
    assert short_timeout <= waited < short_timeout + 1.0  # bounded by the pool timeout
    assert server.counts() == before

    # The pool is healthy afterwards: every connection works, then goes back idle.
    results = await asyncio.gather(
        *(Author.vinyl.using(ALIAS).create(name=f"after {i}") for i in range(2 * POOL_MAX))
    )
    assert len(results) == 2 * POOL_MAX
    stats = await pool_settled(ALIAS)
    assert stats["pool_size"] == POOL_MAX
    assert stats.get("requests_errors", 0) == 1  # the one timeout
    assert all(state == "idle" for _, state, _ in server.sessions())
    await close_pools()
