"""vinyl.flags across asyncio tasks: inherited by tasks spawned later, never leaked sideways."""

import asyncio

import pytest

from vinyl import async_mode, is_async, reset_async, set_async, sync_mode
from vinyl.flags import _mode

pytestmark = pytest.mark.anyio


async def test_auto_mode_is_async_in_a_task():
    assert _mode.get() is None
    assert is_async() is True


async def test_tasks_spawned_after_set_async_inherit_it():
    token = set_async(False)
    try:
        child = asyncio.create_task(asyncio.sleep(0, result=None))
        await child

        async def probe():
            return is_async()

        assert await asyncio.create_task(probe()) is False
        assert (await asyncio.gather(probe(), probe())) == [False, False]
        async with asyncio.TaskGroup() as tg:
            t = tg.create_task(probe())
        assert t.result() is False
        assert await asyncio.to_thread(is_async) is False
    finally:
        reset_async(token)
    assert is_async() is True


async def test_worker_threads_copy_the_context():
    def probe():
        return _mode.get(), is_async()

    # Auto mode: async here, sync in the worker thread, which runs no loop.
    assert await asyncio.to_thread(probe) == (None, False)
    with async_mode():  # an explicit flag follows the work into the thread
        assert await asyncio.to_thread(probe) == (True, True)


async def test_tasks_spawned_before_set_async_do_not_see_it():
    seen = asyncio.Event()
    go = asyncio.Event()

    async def early():
        seen.set()
        await go.wait()
        return _mode.get(), is_async()

    task = asyncio.create_task(early())
    await seen.wait()
    with sync_mode():
        go.set()
        await asyncio.sleep(0)
        assert await task == (None, True)


async def test_a_flag_set_in_a_task_does_not_leak_to_its_parent_or_siblings():
    ready = asyncio.Barrier(3)

    async def setter():
        set_async(False)  # no reset: the task's own context copy dies with it
        await ready.wait()
        await ready.wait()
        return is_async()

    async def sibling():
        await ready.wait()
        value = is_async()
        await ready.wait()
        return value

    results = await asyncio.gather(setter(), sibling(), sibling())
    assert results == [False, True, True]
    assert _mode.get() is None


async def test_interleaved_tasks_sharing_one_mode_block():
    block = sync_mode()
    entered = [asyncio.Event() for _ in range(3)]
    go = [asyncio.Event() for _ in range(3)]

    async def worker(i):
        with block:
            entered[i].set()
            await go[i].wait()
            value = is_async()
        return value, _mode.get()

    tasks = []
    for i in range(3):
        tasks.append(asyncio.create_task(worker(i)))
        await entered[i].wait()
    for i in (0, 2, 1):  # leave in an order unrelated to the order of entry
        go[i].set()
        await asyncio.sleep(0)
    assert await asyncio.gather(*tasks) == [(False, None)] * 3


async def test_decorated_coroutine_sets_mode_only_while_it_runs():
    @sync_mode()
    async def work(started, go):
        started.set()
        await go.wait()
        return is_async()

    started, go = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(work(started, go))
    await started.wait()
    assert is_async() is True  # the decorated coroutine's mode stays inside it
    go.set()
    assert await task is False


async def test_mode_block_around_await_points():
    with async_mode():
        await asyncio.sleep(0)
        assert is_async()
        with sync_mode():
            await asyncio.sleep(0)
            assert not is_async()
        assert is_async()
    token = set_async(None)
    reset_async(token)
    assert _mode.get() is None
