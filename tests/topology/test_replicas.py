"""vinyl.routers.PrimaryReplicaRouter against a real streaming replica whose replay is paused.

With replay paused the replica lags for as long as a test likes: a read that goes there right
after a write is stale for sure, so a test can tell the pin's effect from luck.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator

import pytest
from django.db import OperationalError
from django.test import override_settings

from tests.helpers import temporary_alias
from tests.testapp.models import Author
from tests.topology.conftest import PRIMARY, REPLICA
from vinyl import atomic, gather, is_async, maybe_async, routers
from vinyl.routers import PrimaryReplicaRouter, ReadYourWritesMiddleware, pin_scope
from vinyl.testing import both_modes

N = 20  # write-then-read requests per measurement


@pytest.fixture
def lagging(topo) -> Iterator:
    """The replica stops replaying WAL: it sees nothing written from now on."""
    routers._down_until.clear()
    topo.pause_replay()
    try:
        yield topo
    finally:
        topo.resume_replay()
        routers._down_until.clear()


def use_router(**kwargs):
    kwargs = {"primary": PRIMARY, "replicas": [REPLICA], **kwargs}
    return override_settings(DATABASE_ROUTERS=[PrimaryReplicaRouter(**kwargs)])


@maybe_async
def write_then_read(name: str):
    """One request: create a row, read it back at once. Return whether the read was stale."""
    yield Author.vinyl.create(name=name)
    return not (yield Author.vinyl.filter(name=name).exists())


@maybe_async
def requests(label: str):
    """N requests, each in a pin scope of its own (async mode: all at once); count stale reads."""

    @maybe_async
    def one(i: int):
        with pin_scope():
            return (yield write_then_read(f"{label}{i}"))

    stale = yield gather(*(one(i) for i in range(N)))
    return sum(stale)


@both_modes
def test_stale_reads_without_and_with_the_pin(lagging, vinyl_mode):
    with use_router(pin_seconds=0):  # a write pins nothing
        unpinned = yield requests("u")
    with use_router(pin_seconds=5):
        pinned = yield requests("p")
    print(f"\n{vinyl_mode}: stale reads right after the request's own write, {N} requests: "
          f"{unpinned} without the pin, {pinned} with it")  # fmt: skip
    assert unpinned == N  # the replica lags: every unpinned read is stale
    assert pinned == 0


@both_modes
def test_reads_go_to_the_replica_until_a_write(lagging):
    yield Author.vinyl.using(PRIMARY).create(name="before")  # not through the router
    with use_router(pin_seconds=5), pin_scope():
        assert Author.vinyl.all().db == REPLICA
        assert (yield Author.vinyl.count()) == 0  # the replica has not replayed it
        yield Author.vinyl.create(name="mine")
        assert Author.vinyl.all().db == PRIMARY
        assert (yield Author.vinyl.count()) == 2
        # using() wins over the router, pinned or not.
        assert (yield Author.vinyl.using(REPLICA).count()) == 0
    with use_router(pin_seconds=5), pin_scope():
        assert (yield Author.vinyl.count()) == 0  # a new scope (request) starts unpinned


@both_modes
def test_the_pin_expires(lagging):
    with use_router(pin_seconds=0.3), pin_scope():
        yield Author.vinyl.create(name="mine")
        assert (yield Author.vinyl.filter(name="mine").exists())
        time.sleep(0.35)
        assert Author.vinyl.all().db == REPLICA


@atomic(using=PRIMARY)
@maybe_async
def _read_in_transaction():
    return (yield Author.vinyl.count())


@both_modes
def test_reads_inside_atomic_go_to_the_primary(lagging):
    yield Author.vinyl.using(PRIMARY).create(name="before")
    with use_router(pin_seconds=5), pin_scope():
        assert (yield _read_in_transaction()) == 1  # in the transaction: the primary
        assert (yield Author.vinyl.count()) == 0  # no write, no pin: the replica again


@pytest.mark.anyio
async def test_two_requests_on_one_loop_are_pinned_apart(lagging):
    """Request A writes and reads; request B, at the same time on the same loop, only reads:
    A reads its own write from the primary, B keeps reading the (stale) replica."""
    wrote = asyncio.Event()
    seen: dict[str, object] = {}

    async def request_a():
        with pin_scope():
            await Author.vinyl.create(name="A's")
            wrote.set()
            seen["a"] = (Author.vinyl.all().db, await Author.vinyl.filter(name="A's").exists())

    async def request_b():
        with pin_scope():
            await wrote.wait()
            seen["b"] = (Author.vinyl.all().db, await Author.vinyl.filter(name="A's").exists())

    with use_router(pin_seconds=5):
        await asyncio.gather(request_a(), request_b())
    assert seen == {"a": (PRIMARY, True), "b": (REPLICA, False)}


@pytest.mark.anyio
async def test_without_a_scope_each_task_is_pinned_on_its_own(lagging):
    with use_router(pin_seconds=5):

        async def writer():
            await Author.vinyl.create(name="w")
            return Author.vinyl.all().db

        assert await asyncio.create_task(writer()) == PRIMARY
        assert Author.vinyl.all().db == REPLICA  # the parent task never wrote


@pytest.mark.anyio
async def test_middleware_scopes_the_pin_per_request(lagging):
    """With ReadYourWritesMiddleware, a write in a child task pins the whole request; each
    request starts unpinned."""

    async def view(request):
        await asyncio.gather(Author.vinyl.create(name=request))  # the write runs in a child task
        return await Author.vinyl.filter(name=request).exists()

    handler = ReadYourWritesMiddleware(view)
    assert asyncio.iscoroutinefunction(handler)
    with use_router(pin_seconds=5):
        assert await view("no scope") is False  # the child's pin never reached the view
        assert await handler("scoped") is True
        assert Author.vinyl.all().db == REPLICA  # the request's pin ended with it


@pytest.mark.anyio
async def test_a_write_in_a_sync_to_async_thread_pins_the_scope(lagging):
    from asgiref.sync import sync_to_async

    def write():  # sync mode in a worker thread, on Django's connection
        from django.db import connections

        try:
            Author.vinyl.create(name="from a thread")
        finally:
            connections.close_all()

    with use_router(pin_seconds=5), pin_scope():
        await sync_to_async(write, thread_sensitive=False)()
        assert await Author.vinyl.filter(name="from a thread").exists()


def test_sync_middleware(lagging):
    def view(request):
        Author.vinyl.create(name=request)
        return Author.vinyl.filter(name=request).exists()

    handler = ReadYourWritesMiddleware(view)
    with use_router(pin_seconds=5):
        assert handler("one") is True
        assert Author.vinyl.all().db == REPLICA


# -- a replica that is down ---------------------------------------------------------------------


@pytest.fixture
def down_replica(lagging):
    """An alias whose server does not run (nothing listens on its port)."""
    from devtools.embedded_db import _free_port

    settings = {"HOST": "127.0.0.1", "PORT": str(_free_port()), "NAME": "vinyl_topology",
                "USER": "postgres", "PASSWORD": "", "VINYL": {"timeout": 1}}  # fmt: skip
    with temporary_alias("topo_down", **settings) as alias:
        yield alias


@both_modes
def test_replica_down_reads_fall_back_to_the_primary(down_replica, caplog):
    caplog.set_level(logging.WARNING, logger="vinyl.routers")
    yield Author.vinyl.using(PRIMARY).create(name="Ann")
    with use_router(replicas=[down_replica], down_seconds=30):
        assert Author.vinyl.all().db == down_replica
        started = time.monotonic()
        names = yield Author.vinyl.values_list("name", flat=True)
        assert list(names) == ["Ann"]  # read from the primary, not a failed request
        assert routers.is_down(down_replica)
        [record] = [r for r in caplog.records if r.name == "vinyl.routers"]
        assert record.levelno == logging.WARNING
        assert f"Read replica '{down_replica}' is unreachable" in record.getMessage()
        assert f"go to '{PRIMARY}' for the next 30 s" in record.getMessage()
        # Marked down: the router sends reads to the primary at once, nothing is retried.
        assert Author.vinyl.all().db == PRIMARY
        again = time.monotonic()
        assert (yield Author.vinyl.count()) == 1
        assert time.monotonic() - again < 0.5
        print(f"\nfirst read on the down replica took {again - started:.2f} s (pool timeout 1 s)")
        assert len([r for r in caplog.records if r.name == "vinyl.routers"]) == 1


@both_modes
def test_replica_down_without_fallback_fails(down_replica):
    with use_router(replicas=[down_replica], fallback=False):
        with pytest.raises(OperationalError):
            yield Author.vinyl.count()


@both_modes
def test_replica_stopped_mid_run(lagging, caplog):
    """The replica goes down while vinyl holds a connection to it (Django's, or an idle pooled
    one): the read whose statement hits the dead connection runs again on the primary."""
    caplog.set_level(logging.WARNING, logger="vinyl.routers")
    yield Author.vinyl.using(PRIMARY).create(name="Ann")
    lagging.resume_replay()
    lagging.wait_for_replica()
    try:
        with use_router(down_seconds=30):
            assert (yield Author.vinyl.count()) == 1  # connected to the replica
            assert Author.vinyl.all().db == REPLICA
            lagging.replica.stop()
            assert list((yield Author.vinyl.values_list("name", flat=True))) == ["Ann"]
            assert Author.vinyl.all().db == PRIMARY
            [record] = [r for r in caplog.records if r.name == "vinyl.routers"]
            assert f"Read replica '{REPLICA}' is unreachable" in record.getMessage()
    finally:
        lagging.replica.start()


@both_modes
def test_replica_down_streams_fall_back_to_the_primary(down_replica):
    yield Author.vinyl.using(PRIMARY).bulk_create([Author(name=f"A{i}") for i in range(5)])
    with use_router(replicas=[down_replica], down_seconds=30):
        stream = Author.vinyl.order_by("pk").iterator(chunk_size=2)
        if is_async():

            async def consume():
                return [a.name async for a in stream]

            names = yield consume()
        else:
            names = [a.name for a in stream]
        assert names == [f"A{i}" for i in range(5)]
        assert routers.is_down(down_replica)
