"""Pools belong to their event loop: asyncio.run() twice, several threads with their own loops."""

import asyncio
import threading

from tests.testapp.models import Author


async def _count_and_name():
    n = await Author.vinyl.count()
    first = await Author.vinyl.order_by("pk").first()
    return n, first.name


def _in_thread(func, timeout=30):
    result = {}

    def target():
        try:
            result["value"] = func()
        except BaseException as exc:  # reported below
            result["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "the event loop did not finish (hang at shutdown?)"
    if "error" in result:
        raise result["error"]
    return result["value"]


def test_asyncio_run_twice_without_closing_pools(db):
    Author.objects.create(name="Ann")
    # Each asyncio.run() gets a new loop and so a new pool; the old one is closed at loop
    # shutdown instead of hanging the runner.
    assert _in_thread(lambda: asyncio.run(_count_and_name())) == (1, "Ann")
    assert _in_thread(lambda: asyncio.run(_count_and_name())) == (1, "Ann")


def test_threads_with_their_own_loops(db):
    Author.objects.create(name="Ann")
    results = []

    def work():
        results.append(asyncio.run(_count_and_name()))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == [(1, "Ann")] * 4
