"""Pools belong to their event loop: asyncio.run() twice, several threads with their own loops."""

import asyncio
import threading

import pytest

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


LOOPS_SCRIPT = """
import asyncio, gc, os, sys, weakref
sys.path.insert(0, {root!r})
os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
import django
django.setup()
import anyio
from asgiref.sync import async_to_sync
from tests.testapp.models import Author, Book

loops = []

async def job():
    loops.append(weakref.ref(asyncio.get_running_loop()))
    await Author.vinyl.count()
    await Book.vinyl.filter(author__name="x").exists()

runner = {{"asyncio.run": lambda f: asyncio.run(f()), "async_to_sync": lambda f: async_to_sync(f)(),
          "anyio.run": anyio.run}}[sys.argv[1]]
for _ in range(20):
    runner(job)
gc.collect()
print(sum(1 for ref in loops if ref() is not None))
"""


@pytest.mark.parametrize("runner", ["asyncio.run", "async_to_sync", "anyio.run"])
def test_pools_close_with_their_loop(db, runner):
    """20 scripts' worth of asyncio.run() with queries, no close_pools(): no loop outlives its
    run, and nothing is printed at exit (issue 11, item 4)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from django.db import connections

    root = str(Path(__file__).resolve().parent.parent.parent)
    env = {**os.environ, "VINYL_DATABASE_NAME": connections["default"].settings_dict["NAME"]}
    proc = subprocess.run(
        [sys.executable, "-c", LOOPS_SCRIPT.format(root=root), runner],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout.strip()) <= 1
    assert proc.stderr == ""
