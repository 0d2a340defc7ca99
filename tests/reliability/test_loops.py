"""Objects of one event loop used from another: they work, or fail at once with a clear error;
nothing hangs. Each case runs its loops in a thread with a deadline, so a hang fails the test.

``asyncio.run()`` twice and threads with loops of their own are tests/sync/test_event_loops.py.
"""

from __future__ import annotations

import asyncio
import threading

import pytest
from django.db import connections
from django.db.transaction import TransactionManagementError
from psycopg_pool import PoolClosed

from tests.testapp.models import Author
from vinyl import atomic
from vinyl.db.pool import get_pool

DEADLINE = 20.0


def in_thread(func, timeout=DEADLINE):
    """Run *func* in a new thread; return its value or raise its error; fail on a hang."""
    result = {}

    def target():
        try:
            result["value"] = func()
        except BaseException as exc:  # re-raised below
            result["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"hang: {func} still runs after {timeout} s"
    if "error" in result:
        raise result["error"]
    return result["value"]


@pytest.fixture
def two(server):
    Author.objects.create(name="Ann")
    Author.objects.create(name="Bob")
    connections["default"].close()


def test_operation_created_in_one_loop_awaited_in_another(two):
    """An async-mode operation holds no loop until awaited: it runs in the loop that awaits it."""

    async def make():
        return Author.vinyl.count()

    async def wait(awaitable):
        return await awaitable

    pending = in_thread(lambda: asyncio.run(make()))
    assert in_thread(lambda: asyncio.run(wait(pending))) == 2


def test_pool_of_a_closed_loop(two):
    async def pool():
        return await get_pool("default")

    old = in_thread(lambda: asyncio.run(pool()))

    async def use():
        return await old.getconn()

    with pytest.raises(PoolClosed, match="already closed"):
        in_thread(lambda: asyncio.run(use()))

    async def fresh():  # vinyl itself never hands out the old pool
        assert await get_pool("default") is not old
        return await Author.vinyl.count()

    assert in_thread(lambda: asyncio.run(fresh())) == 2


def test_stream_of_a_closed_loop(two):
    """A stream left open when its loop shut down says so instead of ending quietly."""
    streams = []

    async def start():
        stream = Author.vinyl.order_by("pk").iterator(chunk_size=1)
        streams.append(stream)
        return (await stream.__anext__()).name

    assert in_thread(lambda: asyncio.run(start())) == "Ann"

    async def resume():
        return (await streams[0].__anext__()).name

    with pytest.raises(RuntimeError, match="event loop it ran on shut down"):
        in_thread(lambda: asyncio.run(resume()))


def test_stream_closed_by_its_consumer_ends_normally(two):
    async def run():
        stream = Author.vinyl.order_by("pk").iterator(chunk_size=1)
        first = (await stream.__anext__()).name
        await stream.aclose()
        with pytest.raises(StopAsyncIteration):
            await stream.__anext__()
        return first

    assert in_thread(lambda: asyncio.run(run())) == "Ann"


def test_transaction_inherited_by_another_loop(two):
    """asyncio.to_thread copies the context, atomic()'s pin included: a loop started in that
    thread must not use the block's connection (it belongs to the first loop)."""

    async def inner():
        return await Author.vinyl.count()

    async def outer():
        async with atomic():
            await Author.vinyl.create(name="in the block")
            with pytest.raises(TransactionManagementError, match="another event loop"):
                await asyncio.to_thread(asyncio.run, inner())
            return await Author.vinyl.count()  # the block itself is unharmed

    assert in_thread(lambda: asyncio.run(outer())) == 3
