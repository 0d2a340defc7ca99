"""Async streaming: the stream's connection goes back to the pool however the loop ends."""

import asyncio
import gc

import anyio
import pytest
from django.db import connection

from tests.testapp.models import Author, Book
from vinyl import atomic, is_async, sync_mode
from vinyl.db.pool import close_pools, get_pool

pytestmark = pytest.mark.anyio

ROWS = 50


@pytest.fixture
def books(db):
    author = Author.objects.create(name="Ann")
    Book.objects.bulk_create(Book(author=author, title=f"T{i:03}", pages=i) for i in range(ROWS))


@pytest.fixture
async def pool(books):
    pool = await get_pool("default")
    try:
        # Grown to its full size first, so that pool_size stays put and
        # checked_out() counts exactly the connections lent out.
        conns = [await pool.getconn() for _ in range(pool.max_size)]
        for conn in conns:
            await pool.putconn(conn)
        await settled(pool)
        assert pool.get_stats()["pool_size"] == pool.max_size
        yield pool
    finally:
        await close_pools()


async def settled(pool, timeout=5.0):
    """Wait until every connection of the pool is idle in it, then check the server agrees."""
    with anyio.fail_after(timeout):
        while True:
            stats = pool.get_stats()
            if stats["pool_available"] == stats["pool_size"]:
                break
            await asyncio.sleep(0.01)
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND state LIKE 'idle in transaction%%'"
        )
        assert (await cur.fetchone())[0] == 0
        cur = await conn.execute("SELECT count(*) FROM pg_cursors")
        assert (await cur.fetchone())[0] == 0
    return stats


def checked_out(pool):
    stats = pool.get_stats()
    return stats["pool_size"] - stats["pool_available"]


async def test_connection_held_while_streaming_and_returned_at_the_end(pool):
    seen = 0
    async for _ in Book.vinyl.order_by("pk").iterator(chunk_size=7):
        seen += 1
        assert checked_out(pool) == 1
    assert seen == ROWS
    assert checked_out(pool) == 0  # at once, no loop tick needed
    await settled(pool)


async def test_break_then_aclose_returns_the_connection_at_once(pool):
    stream = Book.vinyl.order_by("pk").iterator(chunk_size=7)
    async for book in stream:
        if book.pages == 10:
            break
    assert checked_out(pool) == 1
    await stream.aclose()
    assert checked_out(pool) == 0
    await settled(pool)
    await stream.aclose()  # idempotent


async def test_async_with_returns_the_connection_at_once(pool):
    async with Book.vinyl.order_by("pk").iterator(chunk_size=7) as stream:
        async for book in stream:
            if book.pages == 3:
                break
    assert checked_out(pool) == 0
    await settled(pool)


async def test_break_without_aclose_returns_it_on_finalisation(pool):
    async for book in Book.vinyl.order_by("pk").iterator(chunk_size=7):
        if book.pages == 10:
            break
    gc.collect()
    await asyncio.sleep(0)  # the loop runs the async generator's aclose()
    await settled(pool)


async def test_error_in_the_loop_body_returns_the_connection(pool):
    with pytest.raises(ZeroDivisionError):
        async with Book.vinyl.order_by("pk").iterator(chunk_size=7) as stream:
            async for book in stream:
                1 / (book.pages - 20)  # noqa: B018
    assert checked_out(pool) == 0
    await settled(pool)


async def test_cancelled_while_fetching_returns_the_connection(pool):
    # A slow query: each row waits, so the cancellation lands inside a FETCH on the server.
    from django.db.models import F, Func, IntegerField

    class Slow(Func):  # correlated, so PostgreSQL sleeps for each row
        template = "(SELECT 1 FROM pg_sleep(0.02 + 0 * %(expressions)s))"
        output_field = IntegerField()

    async def consume():
        slow = Book.vinyl.annotate(s=Slow(F("pages"))).order_by("pk")
        async for _ in slow.iterator(chunk_size=20):
            pass

    task = asyncio.ensure_future(consume())
    await asyncio.sleep(0.15)
    assert checked_out(pool) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    stats = await settled(pool)
    assert stats["pool_size"] >= 1
    # The pool's connections still work.
    assert await Book.vinyl.count() == ROWS


async def test_cancelled_by_a_timeout_between_chunks(pool):
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            async for _ in Book.vinyl.order_by("pk").iterator(chunk_size=5):
                await asyncio.sleep(0.01)
    await settled(pool)


async def test_many_concurrent_streams_share_the_pool(pool):
    async def total():
        return sum([b.pages async for b in Book.vinyl.order_by("pk").iterator(chunk_size=4)])

    results = await asyncio.gather(*(total() for _ in range(3 * pool.max_size)))
    assert results == [sum(range(ROWS))] * (3 * pool.max_size)
    await settled(pool)


async def test_inside_atomic_the_stream_uses_the_blocks_connection(pool):
    async with atomic():
        before = checked_out(pool)
        async with Book.vinyl.order_by("pk").iterator(chunk_size=7) as stream:
            titles = [b.title async for b in stream]
        assert checked_out(pool) == before  # no connection of its own
    assert len(titles) == ROWS
    await settled(pool)


async def test_stream_left_open_after_its_block_ends(pool):
    async with atomic():
        stream = Book.vinyl.order_by("pk").iterator(chunk_size=1)
        assert (await stream.__anext__()).pages == 0
    # The block's transaction ended, and its cursor with it.
    with pytest.raises(Exception, match="already ended"):
        await stream.__anext__()
    await stream.aclose()
    await settled(pool)


async def test_sync_iteration_of_an_async_stream_is_refused(pool):
    stream = Book.vinyl.iterator()
    with pytest.raises(TypeError, match="async for"):
        iter(stream)
    await stream.aclose()


def test_django_connection_untouched_by_async_streams(books):
    assert connection.connection is None or not connection.in_atomic_block


async def test_aiterator_is_native(pool):
    with sync_mode():  # whatever the mode, aiterator() streams asynchronously
        stream = Book.vinyl.order_by("pk").aiterator(chunk_size=9)
    assert [b.pages async for b in stream] == list(range(ROWS))
    await settled(pool)


async def test_a_stream_keeps_the_mode_it_was_created_in(pool):
    stream = Book.vinyl.order_by("pk").iterator(chunk_size=3)
    with sync_mode():  # resumed under another mode: still async I/O, no flag leaked
        assert (await stream.__anext__()).pages == 0
        assert not is_async()
    assert is_async()
    with sync_mode():
        await stream.aclose()
    await settled(pool)
