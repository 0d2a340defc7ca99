"""ORM operations cancelled at random points: mid-query, mid-fetch (a large result), mid-stream
(``iterator()``), inside nested savepoints and inside an ``on_commit`` callback.

tests/async/test_cancellation.py covers each cancellation point of a transaction block with raw
statements and four ways of cancelling; this file drives the ORM (querysets, creates, streams)
under many random cancellations at once and checks the outcome: no connection leaked, no session
idle in a transaction, every unit of work all there or not at all.
"""

from __future__ import annotations

import asyncio
import random

import anyio
import pytest
from django.db import connections
from django.db.models.expressions import RawSQL

from tests.helpers import ALIAS
from tests.pools import pool_settled
from tests.testapp.models import Author, Book, Chapter, Tag
from vinyl import atomic, on_commit
from vinyl.db.pool import close_pools, get_pool

pytestmark = pytest.mark.anyio

TASKS = 200
SEEDS = (1, 2)
BIG = 5_000  # rows a "fetch" reads


@pytest.fixture
def big_table(server):
    author = Author.objects.create(name="reader")
    Book.objects.bulk_create(Book(author=author, title=f"b{i}", pages=i) for i in range(BIG))
    connections["default"].close()
    return author.pk


POINTS = ("query", "fetch", "stream", "savepoints", "on_commit")


@pytest.mark.parametrize("seed", SEEDS)
async def test_orm_operations_cancelled_at_random_points(server, big_table, seed):
    rng = random.Random(seed)
    authors = Author.vinyl.using(ALIAS)
    finished: set[int] = set()
    callbacks_done: set[int] = set()

    async def unit(i, point):
        """A unit of work whose rows must be all there or all absent."""
        if point == "query":
            await authors.annotate(nap=RawSQL("SELECT pg_sleep(0.05)::text", ())).first()
            async with atomic(using=ALIAS):
                author = await authors.create(name=f"{i}")
                await Book.vinyl.using(ALIAS).create(author=author, title=f"{i}/1")
        elif point == "fetch":
            rows = await Book.vinyl.using(ALIAS).filter(author_id=big_table)
            assert len(rows) == BIG
        elif point == "stream":
            seen = 0
            async for _ in (
                Book.vinyl.using(ALIAS).filter(author_id=big_table).iterator(chunk_size=250)
            ):
                seen += 1
            assert seen == BIG
        elif point == "savepoints":
            async with atomic(using=ALIAS):
                author = await authors.create(name=f"{i}")
                async with atomic(using=ALIAS):
                    await Book.vinyl.using(ALIAS).create(author=author, title=f"{i}/1")
                    async with atomic(using=ALIAS):
                        book = await Book.vinyl.using(ALIAS).get(title=f"{i}/1")
                        await Chapter.vinyl.using(ALIAS).create(book=book, number=1, title="c")
                        await asyncio.sleep(rng.random() * 0.01)
        else:

            async def callback():
                async with atomic(using=ALIAS):
                    await Tag.vinyl.using(ALIAS).create(name=f"{i}:x")
                    await asyncio.sleep(rng.random() * 0.01)
                    await Tag.vinyl.using(ALIAS).create(name=f"{i}:y")
                callbacks_done.add(i)

            async with atomic(using=ALIAS):
                await authors.create(name=f"{i}")
                await on_commit(callback, using=ALIAS)
        finished.add(i)

    async def task(i, point):
        delay = rng.random() * 0.15
        how = rng.choice(["timeout", "anyio", "none"])
        if how == "timeout":
            try:
                async with asyncio.timeout(delay):
                    await unit(i, point)
            except TimeoutError:
                pass
        elif how == "anyio":
            with anyio.move_on_after(delay):
                await unit(i, point)
        else:
            await unit(i, point)

    plan = [(i, rng.choice(POINTS)) for i in range(TASKS)]
    tasks = [asyncio.create_task(task(i, point)) for i, point in plan]
    external = rng.sample(range(TASKS), TASKS // 5)
    for i in external:
        await asyncio.sleep(rng.random() * 0.003)
        tasks[i].cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    unexpected = [r for r in results if isinstance(r, BaseException)
                  and not isinstance(r, asyncio.CancelledError)]  # fmt: skip
    assert not unexpected, unexpected[:5]
    cancelled = TASKS - len(finished)
    assert 0 < cancelled < TASKS

    # All or nothing, per unit of work.
    names = {n for (n,) in server.rows("SELECT name FROM testapp_author")}
    books = {t for (t,) in server.rows("SELECT title FROM testapp_book WHERE author_id <> %s",
                                       [big_table])}  # fmt: skip
    chapters = server.value("SELECT count(*) FROM testapp_chapter")
    tags = {t for (t,) in server.rows("SELECT name FROM testapp_tag")}
    expected_chapters = 0
    for i, point in plan:
        if point == "query" or point == "savepoints":
            assert (f"{i}" in names) == (f"{i}/1" in books), i
            if point == "savepoints" and f"{i}" in names:
                expected_chapters += 1
            if i in finished:
                assert f"{i}" in names
        elif point == "on_commit":
            assert (f"{i}:x" in tags) == (f"{i}:y" in tags), i  # the callback's own block
            if f"{i}:x" in tags:
                assert f"{i}" in names  # callbacks run after the commit only
            if i in callbacks_done:
                assert f"{i}:x" in tags
    assert chapters == expected_chapters
    assert server.value("SELECT count(*) FROM testapp_book WHERE author_id = %s",
                        [big_table]) == BIG  # fmt: skip

    # Nothing leaked: the pool has every connection back idle, the server agrees.
    pool = await get_pool(ALIAS)
    stats = await pool_settled(ALIAS)
    assert stats["pool_size"] <= pool.max_size
    states = [state for _, state, _ in server.sessions()]
    assert states.count("idle in transaction") == 0
    assert states.count("idle in transaction (aborted)") == 0
    assert set(states) <= {"idle"}, states
    print(f"seed {seed}: {TASKS} tasks, {cancelled} cancelled "
          f"({ {p: sum(1 for i, q in plan if q == p and i not in finished) for p in POINTS} }), "
          f"pool {stats}")  # fmt: skip
    await close_pools()
