"""vinyl.cursor() in async mode: ``async with``, the pooled connection it holds, cancellation.

The ``outside`` fixture (tests/async/conftest.py) checks that every test leaves the pool and the
server clean.
"""

import asyncio
import gc

import anyio
import pytest

import vinyl
from tests.pools import pool_settled
from vinyl import atomic
from vinyl.db.pool import get_pool

pytestmark = pytest.mark.anyio


async def test_async_with_holds_one_pooled_connection_until_it_exits(outside):
    pool = await get_pool("default")
    await pool_settled()
    async with vinyl.cursor() as cursor:
        assert pool.get_stats()["pool_available"] == pool.get_stats()["pool_size"] - 1
        await cursor.execute("SELECT %s::text || 'b'", ["a"])
        assert await cursor.fetchone() == ("ab",)
        assert [row async for row in await cursor.execute("SELECT generate_series(1, 2)")] == [
            (1,),
            (2,),
        ]
    assert cursor.closed
    await pool_settled()


async def test_with_in_async_mode_names_async_with(db):
    with pytest.raises(TypeError, match="async with vinyl.cursor"):
        with vinyl.cursor():
            pass


async def test_an_error_inside_the_block_still_returns_the_connection(outside):
    with pytest.raises(ZeroDivisionError):
        async with vinyl.cursor() as cursor:
            await cursor.execute("SELECT 1")
            raise ZeroDivisionError
    assert cursor.closed


@pytest.mark.parametrize("how", ["timeout", "task.cancel", "anyio scope"])
async def test_cancelled_mid_query_the_connection_goes_back_clean(outside, how):
    started = asyncio.Event()

    async def sleeper():
        async with vinyl.cursor() as cursor:
            started.set()
            await cursor.execute("SELECT pg_sleep(5)")

    if how == "timeout":
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await sleeper()
    elif how == "task.cancel":
        task = asyncio.create_task(sleeper())
        await started.wait()
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    else:
        with anyio.move_on_after(0.3):
            await sleeper()
    # Every connection idle in the pool and working (the outside fixture checks the server).
    stats = await pool_settled()
    for _ in range(stats["pool_size"] + 1):
        async with vinyl.cursor() as cursor:
            await cursor.execute("SELECT 1")
            assert await cursor.fetchone() == (1,)


async def test_cancelled_mid_query_in_atomic_rolls_the_block_back(outside):
    async def work():
        async with atomic():
            async with vinyl.cursor() as cursor:
                await cursor.execute("INSERT INTO testapp_author (name) VALUES ('x')")
                await cursor.execute("SELECT pg_sleep(5)")

    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            await work()
    assert outside.names() == []


async def test_child_tasks_of_the_block_wait_for_an_open_cursor(outside):
    order = []
    async with atomic():
        async with vinyl.cursor() as cursor:
            task = asyncio.create_task(child_then_close(order))
            await asyncio.sleep(0.1)
            await cursor.execute("SELECT 1")
            order.append("parent")
        await task
    assert order == ["parent", "child"]


async def child_then_close(order):
    cursor = await vinyl.cursor().open()  # waits until the block's cursor is closed
    try:
        order.append("child")
    finally:
        await cursor.close()


async def test_a_cursor_never_closed_warns_naming_async_with(outside):
    cursor = await vinyl.cursor().open()
    handle = cursor._handle
    with pytest.warns(ResourceWarning, match="async with vinyl.cursor"):
        del cursor
        gc.collect()
    await handle.release()  # what the forgotten close() would have done
