"""vinyl.flags across threads: a thread's flag is its own."""

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

from vinyl import async_mode, is_async, reset_async, set_async, sync_mode
from vinyl.flags import _mode


def run_in_thread(func):
    result = {}

    def target():
        try:
            result["value"] = func()
        except BaseException as exc:  # pragma: no cover - re-raised below
            result["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


def test_a_new_thread_starts_in_auto_mode():
    token = set_async(True)
    try:
        assert run_in_thread(lambda: (_mode.get(), is_async())) == (None, False)
        with sync_mode():
            assert run_in_thread(lambda: _mode.get()) is None
    finally:
        reset_async(token)


def test_a_flag_set_in_a_thread_stays_there():
    def worker():
        set_async(True)
        with sync_mode():
            pass
        return is_async()

    assert run_in_thread(worker) is True
    assert _mode.get() is None and is_async() is False


def test_threads_do_not_see_each_others_flags():
    barrier = threading.Barrier(8)

    def worker(i):
        want = i % 2 == 0
        with async_mode() if want else sync_mode():
            barrier.wait()  # every thread has set its flag before any reads
            seen = [is_async() for _ in range(100)]
            barrier.wait()
        return all(s is want for s in seen) and _mode.get() is None

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(worker, range(8))) == [True] * 8


def test_shared_instance_across_threads():
    block = async_mode()
    barrier = threading.Barrier(4)

    def worker(_):
        with block:
            barrier.wait()
            ok = is_async()
            barrier.wait()  # every thread is inside before any exits
        return ok and _mode.get() is None

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(worker, range(4))) == [True] * 4


def test_a_loop_in_another_thread_does_not_make_this_one_async():
    started, stop = threading.Event(), threading.Event()

    async def serve():
        started.set()
        while not stop.is_set():
            await asyncio.sleep(0.001)
        return is_async()

    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("v", asyncio.run(serve())))
    thread.start()
    started.wait()
    try:
        assert is_async() is False
    finally:
        stop.set()
        thread.join()
    assert result["v"] is True
