"""Async mode: ``async with atomic()`` and the tasks that share a transaction.

The rule (vinyl/transaction.py, docs/transactions.md): child tasks started inside a block run
their queries on the block's connection, one operation at a time; only the task that opened the
block may nest blocks; a child that outlives the block gets TransactionManagementError.
"""

import asyncio
import contextvars

import anyio
import pytest
from django.db import OperationalError
from django.db.transaction import TransactionManagementError

import vinyl
from tests.helpers import Boom
from tests.testapp.models import Author, Book
from vinyl import atomic
from vinyl.connection import MULTI, NO_RESULTS, SINGLE, acquire, run, run_on

pytestmark = pytest.mark.anyio


def insert(name):
    return run("default", "INSERT INTO testapp_author (name) VALUES (%s)", [name], NO_RESULTS)


async def names():
    rows = await run("default", "SELECT name FROM testapp_author ORDER BY id", None, MULTI)
    return [name for (name,) in rows]


async def backend_pid():
    return (await run("default", "SELECT pg_backend_pid()", None, SINGLE))[0]


# -- the forms ----------------------------------------------------------------------------------


async def test_async_with_commits_and_rolls_back(outside):
    async with atomic() as block:
        assert isinstance(block, vinyl.transaction.Atomic)
        await insert("a")
        assert await names() == ["a"]
        assert outside.names() == []
    assert outside.names() == ["a"]
    with pytest.raises(Boom):
        async with atomic():
            await insert("b")
            raise Boom
    assert outside.names() == ["a"]


async def test_decorated_coroutine_functions(outside):
    @atomic
    async def bare(name):
        await insert(name)
        return await Author.vinyl.count()

    @atomic(using="default", savepoint=False)
    async def configured(name):
        await insert(name)
        raise Boom

    assert await bare("a") == 1
    with pytest.raises(Boom):
        await configured("b")
    async with atomic():
        with pytest.raises(Boom):
            await configured("c")
        assert vinyl.get_rollback() is True
    assert outside.names() == ["a"]
    assert bare.__name__ == "bare"


async def test_sync_form_in_async_mode_is_a_clear_error(outside):
    with pytest.raises(TypeError, match="async with atomic"), atomic():
        pass


async def test_one_atomic_object_used_by_concurrent_tasks(outside):
    block = atomic()
    first_in, second_in, first_checked = anyio.Event(), anyio.Event(), anyio.Event()

    async def first():
        async with block:
            await insert("first")
            first_in.set()
            await second_in.wait()
            assert await names() == ["first"]  # the other task's row is not in this transaction
            first_checked.set()
            raise Boom

    async def second():
        await first_in.wait()
        async with block:
            await insert("second")
            assert await names() == ["second"]
            second_in.set()
            await first_checked.wait()

    results = await asyncio.gather(first(), second(), return_exceptions=True)
    assert isinstance(results[0], Boom), results
    assert results[1] is None, results
    assert outside.names() == ["second"]


# -- child tasks --------------------------------------------------------------------------------


async def _child(name):
    """Insert a row after checking it runs in the parent's transaction."""
    assert "parent" in await names()  # uncommitted: visible on the block's connection only
    await insert(name)
    await asyncio.sleep(0)
    await insert(f"{name}+")
    return await backend_pid()


async def _spawn_with(how, names_):
    if how == "asyncio.gather":
        return await asyncio.gather(*(_child(n) for n in names_))
    if how == "vinyl.gather":
        return await vinyl.gather(*(_child(n) for n in names_))
    if how == "create_task":
        tasks = [asyncio.create_task(_child(n)) for n in names_]
        return [await t for t in tasks]
    if how == "taskgroup":
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(_child(n)) for n in names_]
        return [t.result() for t in tasks]
    assert how == "anyio"
    pids = []

    async def collect(n):
        pids.append(await _child(n))

    async with anyio.create_task_group() as tg:
        for n in names_:
            tg.start_soon(collect, n)
    return pids


@pytest.mark.parametrize(
    "how", ["asyncio.gather", "vinyl.gather", "create_task", "taskgroup", "anyio"]
)
@pytest.mark.parametrize("commit", [True, False])
async def test_child_tasks_share_the_transaction(outside, how, commit):
    children = [f"c{i}" for i in range(5)]
    with pytest.raises(Boom) if not commit else _no_error():
        async with atomic():
            await insert("parent")
            pid = await backend_pid()
            pids = await _spawn_with(how, children)
            assert set(pids) == {pid}
            assert sorted(await names()) == sorted(
                ["parent", *children, *(c + "+" for c in children)]
            )
            assert outside.names() == []
            if not commit:
                raise Boom
    if commit:
        assert len(outside.names()) == 11
    else:
        assert outside.names() == []  # the children's writes went with the rollback


class _no_error:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


async def test_child_operations_are_serialised(outside):
    """An operation holds the block's connection until it ends; others' statements wait."""
    events = []

    async def multi_statement_operation():
        handle = await acquire("default")
        try:
            events.append("A begins")
            await run_on(
                handle, "INSERT INTO testapp_author (name) VALUES ('A1')", None, NO_RESULTS
            )
            await asyncio.sleep(0.05)  # the other child is ready to run meanwhile
            await run_on(
                handle, "INSERT INTO testapp_author (name) VALUES ('A2')", None, NO_RESULTS
            )
            events.append("A ends")
        finally:
            await handle.release()

    async def single_statement():
        await asyncio.sleep(0.01)
        events.append("B starts")
        await insert("B")
        events.append("B done")

    async with atomic():
        await asyncio.gather(multi_statement_operation(), single_statement())
        assert await names() == ["A1", "A2", "B"]
    assert events == ["A begins", "B starts", "A ends", "B done"]
    assert outside.names() == ["A1", "A2", "B"]


async def test_savepoint_in_a_child_task_is_refused(outside):
    async def child():
        async with atomic():
            await insert("child")

    async with atomic():
        await insert("parent")
        with pytest.raises(TransactionManagementError, match="child task"):
            await asyncio.create_task(child())

        @atomic
        async def decorated():
            await insert("decorated child")

        with pytest.raises(TransactionManagementError, match="child task"):
            await asyncio.gather(decorated())
        with pytest.raises(RuntimeError, match="durable"):
            await asyncio.create_task(atomic(durable=True)(decorated)())
        assert await names() == ["parent"]
    assert outside.names() == ["parent"]


async def test_block_without_savepoint_in_child_tasks(outside):
    """atomic(savepoint=False) in children: no savepoint, a failure marks the transaction."""

    @atomic(savepoint=False)
    async def child(name, fail=False):
        await insert(name)
        await asyncio.sleep(0)
        if fail:
            raise Boom
        return vinyl.get_rollback()

    async with atomic():
        assert await asyncio.gather(child("a"), child("b")) == [False, False]
        assert sorted(await names()) == ["a", "b"]
        with pytest.raises(Boom):
            async with atomic():  # the parent's savepoint takes the children's failure
                await asyncio.gather(child("c"), child("d", fail=True))
        assert vinyl.get_rollback() is False
        assert sorted(await names()) == ["a", "b"]
    assert sorted(outside.names()) == ["a", "b"]

    async with atomic():
        await insert("e")
        with pytest.raises(Boom):
            await asyncio.gather(child("f", fail=True))
        assert vinyl.get_rollback() is True
        with pytest.raises(TransactionManagementError, match="until the end of the 'atomic'"):
            await insert("g")
    assert sorted(outside.names()) == ["a", "b"]


async def test_mark_for_rollback_on_error_in_a_child_task(outside):
    async def child():
        with vinyl.transaction.mark_for_rollback_on_error():
            await insert("child")
            raise Boom

    async with atomic():
        await insert("parent")
        with pytest.raises(Boom):
            await asyncio.create_task(child())
        with pytest.raises(TransactionManagementError) as info:
            await insert("refused")
        assert isinstance(info.value.__cause__, Boom)
    assert outside.names() == []


async def test_independent_transaction_from_inside_a_block(outside):
    """A task started in a fresh context does not inherit the block."""

    async def independent():
        async with atomic():
            await insert("independent")
            return await backend_pid()

    async with atomic():
        await insert("parent")
        pid = await asyncio.create_task(independent(), context=contextvars.Context())
        assert pid != await backend_pid()
        assert outside.names() == ["independent"]  # committed on its own
    assert sorted(outside.names()) == ["independent", "parent"]


async def test_nested_atomic_on_another_database_in_a_child_task(outside):
    async def child():
        async with atomic(using="serializable"):
            row = await run("serializable", "SHOW transaction_isolation", None, SINGLE)
            return row[0]

    async with atomic():
        assert await asyncio.create_task(child()) == "serializable"


async def test_child_outliving_the_block_is_refused(outside):
    block_done = asyncio.Event()

    async def late_child(late):
        await insert("in time")
        await block_done.wait()
        await late()

    def on_commit_too_late():
        return vinyl.on_commit(lambda: None)

    async def atomic_too_late():
        async with atomic(savepoint=False):
            pass

    lates = {
        "query": lambda: insert("too late"),
        "on_commit": on_commit_too_late,
        "atomic": atomic_too_late,
        "get_rollback": lambda: asyncio.sleep(0, vinyl.get_rollback()),
    }
    async with atomic():
        await insert("parent")
        tasks = [asyncio.create_task(late_child(late)) for late in lates.values()]
        await asyncio.sleep(0.05)
    block_done.set()
    for task in tasks:
        with pytest.raises(TransactionManagementError, match="already ended"):
            await task
    assert outside.names() == ["parent", *["in time"] * len(lates)]


async def test_child_waiting_for_the_connection_when_the_block_ends(outside):
    """A child queued behind the block's COMMIT must not run on the returned connection."""

    async def slow_child():
        await run(
            "default",
            "INSERT INTO testapp_author (name) SELECT 'slow' FROM pg_sleep(0.3)",
            None,
            NO_RESULTS,
        )

    async def queued_child():
        await asyncio.sleep(0.1)  # the block's exit is waiting for slow_child by now
        await insert("queued")

    async with atomic():
        slow = asyncio.create_task(slow_child())
        queued = asyncio.create_task(queued_child())
        await asyncio.sleep(0.05)
    await slow
    with pytest.raises(TransactionManagementError, match="already ended"):
        await queued
    assert outside.names() == ["slow"]


async def test_on_commit_from_child_tasks(outside):
    calls = []

    async def child(i):
        await vinyl.on_commit(lambda: calls.append(i))

    async with atomic():
        await asyncio.gather(*(child(i) for i in range(3)))
        assert calls == []
    assert sorted(calls) == [0, 1, 2]


async def test_queries_outside_the_block_run_in_autocommit(outside):
    """A task started before the block does not see it."""
    started = asyncio.Event()
    release = asyncio.Event()

    async def bystander():
        started.set()
        await release.wait()
        return await names()

    task = asyncio.create_task(bystander())
    await started.wait()
    async with atomic():
        await insert("in block")
        release.set()
        assert await task == []  # its own connection, no uncommitted rows


# -- select_for_update between two transactions -------------------------------------------------


@pytest.fixture
def book_a(db):
    Book.objects.create(author=Author.objects.create(name="Ann"), title="A", pages=1)


async def test_select_for_update_blocks_a_second_task(book_a, outside):
    locked = asyncio.Event()
    order = []

    async def first():
        async with atomic():
            book = await Book.vinyl.select_for_update().get(title="A")
            locked.set()
            await asyncio.sleep(0.2)
            await run(
                "default", "UPDATE testapp_book SET pages = 2 WHERE id = %s", [book.pk], NO_RESULTS
            )
            order.append("first commits")

    async def second():
        await locked.wait()
        async with atomic():
            with pytest.raises(OperationalError, match="could not obtain lock"):
                async with atomic():
                    await Book.vinyl.select_for_update(nowait=True).get(title="A")
            book = await Book.vinyl.select_for_update().get(title="A")
            order.append("second locked")
            return book.pages

    _, pages = await asyncio.gather(first(), second())
    assert order == ["first commits", "second locked"]
    assert pages == 2
