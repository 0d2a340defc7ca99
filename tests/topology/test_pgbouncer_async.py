"""Async mode through PgBouncer: cancellation, and many tasks on few server connections."""

from __future__ import annotations

import asyncio
import time

import pytest
from django.db.models import F

from tests.pools import pool_settled
from tests.testapp.models import Author, Book
from tests.topology.conftest import BOUNCER, PRIMARY
from tests.topology.probes import ServerWatch, assert_servers_clean
from vinyl import atomic, close_pools
from vinyl.connection import NO_RESULTS, run

pytestmark = pytest.mark.anyio


async def _settled(bouncer) -> None:
    await pool_settled(BOUNCER)
    await close_pools()
    await asyncio.to_thread(assert_servers_clean, bouncer)


async def test_cancelled_mid_query(bouncer):
    """A query cancelled by a timeout is cancelled on the server through PgBouncer (which
    forwards the cancel request); the server connection goes back idle and clean."""
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            await run(BOUNCER, "SELECT pg_sleep(30)", None, NO_RESULTS)
    elapsed = time.monotonic() - started
    assert elapsed < 5  # cancelled on the server, not waited out
    print(f"\nquery cancelled after 0.3 s through PgBouncer: back in {elapsed:.2f} s")
    assert await Author.vinyl.using(BOUNCER).count() == 0  # the same pool works on
    await _settled(bouncer)


async def test_cancelled_mid_transaction(bouncer):
    """A transaction cancelled mid-statement rolls back: its row, its transaction-local setting
    and its lock are gone, and no server connection stays in the transaction."""
    ann = await Author.vinyl.using(BOUNCER).create(name="Ann")

    async def transaction():
        async with atomic(using=BOUNCER):
            await Author.vinyl.using(BOUNCER).select_for_update().get(pk=ann.pk)
            await run(BOUNCER, "SELECT set_config('vinyl.leftover', 'yes', true)", None,
                      NO_RESULTS)  # fmt: skip
            await Book.vinyl.using(BOUNCER).create(author=ann, title="in doubt")
            await run(BOUNCER, "SELECT pg_sleep(30)", None, NO_RESULTS)

    task = asyncio.create_task(transaction())
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await Book.vinyl.using(PRIMARY).count() == 0
    # The row lock went with the transaction: a NOWAIT lock succeeds at once.
    async with atomic(using=BOUNCER):
        await Author.vinyl.using(BOUNCER).select_for_update(nowait=True).get(pk=ann.pk)
    await _settled(bouncer)


async def test_500_tasks_through_5_server_connections(bouncer):
    """500 concurrent tasks (reads, writes, transactions with select_for_update) on a vinyl pool
    of 20 client connections, through PgBouncer's pool of 5 server connections."""
    authors = await Author.vinyl.using(BOUNCER).bulk_create(
        [Author(name=f"A{i}") for i in range(10)]
    )
    await Book.vinyl.using(BOUNCER).bulk_create(
        [Book(author=a, title=f"stock {a.name}", pages=1000) for a in authors]
    )
    books = {b.author_id: b.pk for b in await Book.vinyl.using(BOUNCER).all()}

    async def task(i: int) -> str:
        author = authors[i % 10]
        kind = i % 4
        if kind == 0:
            return (await Author.vinyl.using(BOUNCER).get(pk=author.pk)).name
        if kind == 1:
            await Book.vinyl.using(BOUNCER).create(author=author, title=f"new {i}")
            return "written"
        if kind == 2:
            async with atomic(using=BOUNCER):
                book = await Book.vinyl.using(BOUNCER).select_for_update().get(pk=books[author.pk])
                await Book.vinyl.using(BOUNCER).filter(pk=book.pk).update(pages=F("pages") - 1)
            return "taken"
        return str(await Book.vinyl.using(BOUNCER).filter(author=author).count())

    with ServerWatch(bouncer) as watch:
        started = time.perf_counter()
        results = await asyncio.gather(*(task(i) for i in range(500)))
        elapsed = time.perf_counter() - started
    assert len(results) == 500
    assert results.count("written") == 125 and results.count("taken") == 125
    assert await Book.vinyl.using(PRIMARY).filter(title__startswith="new").count() == 125
    stock = (
        await Book.vinyl.using(PRIMARY)
        .filter(title__startswith="stock")
        .values_list("pages", flat=True)
    )
    assert sum(stock) == 10 * 1000 - 125
    assert watch.samples > 0
    assert 1 <= watch.max_servers <= bouncer.pool_size
    print(
        f"\n500 tasks through PgBouncer: {elapsed:.2f} s, at most {watch.max_servers} server "
        f"connections and {watch.max_waiting} waiting clients seen ({watch.samples} samples)"
    )
    await _settled(bouncer)
