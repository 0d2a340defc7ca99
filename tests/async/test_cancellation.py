"""Cancellation at any await inside a transaction: rolled back, connection back to the pool clean.

Cancellations come from ``asyncio.timeout``, ``Task.cancel()`` and anyio cancel scopes. After each
test the pool must hold all its connections idle and no session may be idle in a transaction.
"""

import asyncio
import random
import time

import anyio
import pytest
from django.db import connection as django_connection
from django.db.transaction import TransactionManagementError

from tests.pools import pool_settled
from vinyl import atomic
from vinyl.connection import MULTI, NO_RESULTS, capture_queries, run
from vinyl.db.pool import close_pools, get_pool
from vinyl.db.wrapper import sql_connection

pytestmark = pytest.mark.anyio


@pytest.fixture
def slow_commit(db):
    """COMMIT takes 0.3 s when a row named 'slow commit' was inserted (a deferred trigger)."""
    with django_connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION vinyl_slow_commit() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN PERFORM pg_sleep(0.3); RETURN NULL; END $$"
        )
        cursor.execute(
            "CREATE CONSTRAINT TRIGGER vinyl_slow_commit AFTER INSERT ON testapp_author "
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.name = 'slow commit') "
            "EXECUTE FUNCTION vinyl_slow_commit()"
        )
    yield
    with django_connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER vinyl_slow_commit ON testapp_author")
        cursor.execute("DROP FUNCTION vinyl_slow_commit()")


def insert(name):
    return run("default", "INSERT INTO testapp_author (name) VALUES (%s)", [name], NO_RESULTS)


def pg_sleep(seconds):
    return run("default", "SELECT pg_sleep(%s)", [seconds], NO_RESULTS)


# Where the block is when the cancellation arrives.
async def _in_query():
    async with atomic():
        await insert("x")
        await pg_sleep(5)


async def _between_queries():
    async with atomic():
        await insert("x")
        await asyncio.sleep(5)


async def _in_savepoint_query():
    async with atomic():
        await insert("x")
        async with atomic():
            await insert("y")
            await pg_sleep(5)


async def _between_savepoint_queries():
    async with atomic():
        await insert("x")
        async with atomic():
            await insert("y")
            await asyncio.sleep(5)


async def _in_child_query():
    async with atomic():
        await insert("x")
        await asyncio.gather(pg_sleep(5), insert("y"), pg_sleep(5))


async def _in_on_commit_callback():
    async with atomic():
        await insert("x")

        async def callback():
            await asyncio.sleep(5)

        from vinyl import on_commit

        await on_commit(callback)


POINTS = {
    "query": (_in_query, []),
    "between queries": (_between_queries, []),
    "savepoint query": (_in_savepoint_query, []),
    "between savepoint queries": (_between_savepoint_queries, []),
    "child query": (_in_child_query, []),
    "on_commit callback": (_in_on_commit_callback, ["x"]),  # after the commit: nothing to undo
}


async def _cancel_with(how, body, delay, must_raise=True):
    """Cancel *body* after *delay* seconds, the way *how* says."""
    if how == "asyncio.timeout":
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(delay):
                await body()
    elif how == "task.cancel":
        task = asyncio.create_task(body())
        await asyncio.sleep(delay)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    elif how == "anyio.move_on_after":
        with anyio.move_on_after(delay) as scope:
            await body()
        # anyio cancels at the next checkpoint; a body that ends in a shielded clean-up (COMMIT)
        # may have none left.
        assert scope.cancel_called and (scope.cancelled_caught or not must_raise)
    else:
        assert how == "anyio task group"
        async with anyio.create_task_group() as tg:
            tg.start_soon(body)
            await anyio.sleep(delay)
            tg.cancel_scope.cancel()


HOWS = ["asyncio.timeout", "task.cancel", "anyio.move_on_after", "anyio task group"]


@pytest.mark.parametrize("point", list(POINTS))
@pytest.mark.parametrize("how", HOWS)
async def test_cancelled_block_rolls_back(outside, point, how):
    body, committed = POINTS[point]
    started = time.monotonic()
    await _cancel_with(how, body, 0.1)
    assert time.monotonic() - started < 2  # the cancellation took effect at once
    assert outside.names() == committed
    async with atomic():  # the pool serves a working connection
        await insert("after")
    assert outside.names() == [*committed, "after"]


@pytest.mark.parametrize("how", HOWS)
async def test_cancellation_during_begin(outside, how):
    """Cancelled at its first wait, the block is in BEGIN: the connection goes back clean."""
    await pool_settled()
    with capture_queries() as log:
        await _cancel_with(how, _in_query, 0)
    assert [sql for sql, _ in log] == ["BEGIN"]
    assert outside.names() == []


@pytest.mark.parametrize("how", HOWS)
async def test_cancellation_during_commit_waits_for_the_commit(outside, slow_commit, how):
    """A COMMIT is never cut off: the transaction is committed, then the task is cancelled."""

    async def body():
        async with atomic():
            await insert("slow commit")

    started = time.monotonic()
    await _cancel_with(how, body, 0.1, must_raise=False)
    assert time.monotonic() - started >= 0.3
    assert outside.names() == ["slow commit"]


async def test_a_commit_held_from_an_anyio_cancellation_does_not_busy_wait(outside, slow_commit):
    """anyio delivers a scope's cancellation again at every loop cycle; while the COMMIT it
    cannot cut off runs, the task must sleep through those, not spin on them."""
    cpu = time.process_time()
    with anyio.move_on_after(0.05):
        async with atomic():
            await insert("slow commit")
    assert time.process_time() - cpu < 0.15  # the COMMIT alone takes 0.3 s on the server
    assert outside.names() == ["slow commit"]


@pytest.mark.parametrize("how", HOWS)
async def test_cancellation_while_waiting_for_a_pooled_connection(outside, how):
    pool = await get_pool("default")
    await pool_settled()
    held = [await pool.getconn() for _ in range(pool.max_size)]
    try:
        await _cancel_with(how, _in_query, 0.1)
    finally:
        for conn in held:
            await pool.putconn(conn)
    assert outside.names() == []


@pytest.mark.parametrize("how", HOWS)
async def test_cancelled_while_the_pool_opens(outside, how):
    """The first query of a process opens the pool and waits for a connection to learn the
    server version; cancelled there, the pool must be closed, not dropped with its connections
    (the outside fixture checks that no session is left)."""
    await close_pools()
    sql_connection("default").__dict__.pop("pg_version", None)
    await _cancel_with(how, _in_query, 0)
    assert outside.names() == []


@pytest.mark.parametrize("how", HOWS)
async def test_cancelled_query_outside_a_transaction(outside, how):
    async def body():
        await pg_sleep(5)

    await _cancel_with(how, body, 0.1)


async def test_cancelled_query_leaves_the_block_unable_to_commit(outside):
    """A statement cut off mid-way may or may not have run: the block must not commit."""
    async with atomic():
        await insert("before")
        with anyio.move_on_after(0.1):
            await run(
                "default",
                "INSERT INTO testapp_author (name) SELECT 'cancelled' FROM pg_sleep(5)",
                None,
                NO_RESULTS,
            )
        with pytest.raises(TransactionManagementError, match="until the end of the 'atomic'"):
            await insert("after")
    assert outside.names() == []
    async with atomic():
        await insert("before")
        async with atomic():  # a savepoint confines the doubt to itself
            with anyio.move_on_after(0.1):
                await pg_sleep(5)
            with pytest.raises(TransactionManagementError):
                await insert("after")
            raise_rollback = True
        assert raise_rollback
        await insert("after savepoint")
    assert outside.names() == ["before", "after savepoint"]


# -- many tasks cancelled at random points ------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_many_tasks_cancelled_at_random_points(outside, seed):
    rng = random.Random(seed)
    tasks_count = 200
    reached_end: set[int] = set()  # the block's body ran to its end: it must be committed
    committed: set[int] = set()  # the block exited normally
    errors: list[BaseException] = []

    async def body(i, plan):
        async with atomic():
            await insert(f"{i}:a")
            for step in plan:
                if step == "yield":
                    await asyncio.sleep(0)
                elif step == "sleep":
                    await asyncio.sleep(rng.random() * 0.01)
                elif step == "query":
                    await pg_sleep(rng.random() * 0.005)
                elif step == "savepoint":
                    async with atomic():
                        await insert(f"{i}:s")
                        await asyncio.sleep(0)
            await insert(f"{i}:b")
            reached_end.add(i)
        committed.add(i)

    async def worker(i):
        plan = rng.choices(["yield", "sleep", "query", "savepoint"], k=rng.randint(1, 5))
        mode = rng.choice(["none", "none", "asyncio.timeout", "anyio", "external"])
        delay = rng.random() * 0.05
        try:
            if mode == "asyncio.timeout":
                async with asyncio.timeout(delay):
                    await body(i, plan)
            elif mode == "anyio":
                with anyio.move_on_after(delay):
                    await body(i, plan)
            else:
                await body(i, plan)
        except (TimeoutError, asyncio.CancelledError):
            raise
        except BaseException as exc:
            errors.append(exc)
            raise
        return mode

    tasks = [asyncio.create_task(worker(i)) for i in range(tasks_count)]
    external = [i for i in range(tasks_count) if rng.random() < 0.3]
    for i in external:
        await asyncio.sleep(rng.random() * 0.002)
        tasks[i].cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    unexpected = [
        r
        for r in results
        if isinstance(r, BaseException)
        and not isinstance(r, (TimeoutError, asyncio.CancelledError))
    ]
    assert not errors and not unexpected, (errors, unexpected)

    rows = await run("default", "SELECT name FROM testapp_author", None, MULTI)
    by_task: dict[int, set[str]] = {}
    for (name,) in rows:
        i, part = name.split(":")
        by_task.setdefault(int(i), set()).add(part)
    for i in range(tasks_count):
        if i in reached_end:
            assert by_task.get(i, set()) >= {"a", "b"}, i  # committed, every row of it
        else:
            assert i not in by_task, (i, by_task.get(i))  # rolled back, no row of it
    assert committed <= reached_end
    cancelled = tasks_count - len(committed)
    assert 0 < cancelled < tasks_count  # the test exercised both outcomes
    print(
        f"seed {seed}: {len(committed)} committed, {cancelled} cancelled, "
        f"pool stats {(await get_pool('default')).get_stats()}"
    )


@pytest.mark.parametrize("how", HOWS)
async def test_cancelled_in_a_query_of_a_replayed_django_function(outside, how):
    """A Django function run by call_with_io (prefetching, deletion …) unwinds at its query.

    Its pending query raises Abandoned where it stood (its ``finally`` runs, and a query asked
    for while unwinding raises Abandoned too); then the cancellation reaches the caller.
    """
    from tests.testapp.models import Author
    from vinyl.compiler.replay import call_with_io
    from vinyl.db.worker import Abandoned

    unwound = []

    def django_function():
        try:
            return list(Author.objects.extra(select={"s": "pg_sleep(5)"}))  # sync code: taped
        finally:
            try:
                Author.objects.count()
            except Abandoned:
                unwound.append("abandoned")

    async def body():
        await call_with_io(django_function)

    await Author.vinyl.create(name="a")  # pg_sleep runs once per row
    started = time.monotonic()
    await _cancel_with(how, body, 0.1)
    assert time.monotonic() - started < 2
    assert unwound == ["abandoned"]
    assert await call_with_io(lambda: Author.objects.filter(name="x").exists()) is False


@pytest.mark.parametrize("how", HOWS)
async def test_cancelled_in_a_prefetch_query_served_by_the_query_cache(outside, how):
    """A prefetch's recorded query (vinyl's fetch, run by the calling task for the worker): a
    cancellation reaches it as any query (psycopg cancels it on the server), the connection
    goes back to the pool clean, and the same prefetch works afterwards."""
    from django.db.models import Prefetch

    from tests.testapp.models import Author, Book

    author = await Author.vinyl.create(name="a")
    await Book.vinyl.create(author=author, title="t")
    slow = Prefetch("books", Book.vinyl.extra(select={"s": "pg_sleep(5)"}))

    async def body():
        await Author.vinyl.prefetch_related(slow)

    for _ in range(2):  # cold, then from the query cache's template
        started = time.monotonic()
        await _cancel_with(how, body, 0.2)
        assert time.monotonic() - started < 2
    fast = Prefetch("books", Book.vinyl.extra(select={"s": "1"}))
    [found] = await Author.vinyl.prefetch_related(fast)
    assert [b.title for b in found.books.all()] == ["t"]
