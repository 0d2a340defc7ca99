"""vinyl in Django's own test classes, in both modes (issue 11, item 2).

* ``SimpleTestCase`` (no database) and ``TestCase.databases`` refuse vinyl's async queries as they
  refuse Django's sync ones;
* in a ``TestCase`` (one transaction per test on Django's connection), rows vinyl writes in async
  mode are visible to ``Model.objects`` and the other way round, and rolled back with the test;
* ``TransactionTestCase`` (``transaction=True``) works on the pools, on the test database.

Django runs an ``async def`` test method on an event loop of its own in another thread
(``async_to_sync``): vinyl finds the test's connection in the thread that started the loop.
"""

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.core.exceptions import FieldError
from django.db import IntegrityError, connections, transaction
from django.db.transaction import TransactionManagementError
from django.test import SimpleTestCase, TestCase, TransactionTestCase
from django.test.testcases import DatabaseOperationForbidden

from tests.testapp.models import Author, Book
from vinyl import atomic, on_commit, sync_mode
from vinyl.connection import capture_queries

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module", autouse=True)
def empty_tables(django_db_setup):
    """Django's test classes expect empty tables; vinyl's other tests leave rows behind."""
    from django.db import connection

    from tests.helpers import reset_tables

    reset_tables()
    connection.close()


class NoDatabaseAllowed(SimpleTestCase):
    async def test_async_write_refused(self):
        with self.assertRaisesMessage(DatabaseOperationForbidden, "SimpleTestCase"):
            await Author.vinyl.create(name="must not land")

    async def test_async_read_refused(self):
        with self.assertRaisesMessage(DatabaseOperationForbidden, "SimpleTestCase"):
            await Author.vinyl.count()
        with self.assertRaisesMessage(DatabaseOperationForbidden, "SimpleTestCase"):
            async with atomic():
                pass

    async def test_compiled_before_refused_as_in_django(self):
        # Django compiles before it connects: the query's own error, or no query at all.
        with self.assertRaisesMessage(FieldError, "Invalid field name(s) given in select_related"):
            await Book.vinyl.select_related("no_such_field")
        assert await Author.vinyl.filter(pk__in=[]) == []
        assert await Author.vinyl.filter(pk__in=[]).first() is None

    def test_sync_refused_the_same(self):
        with sync_mode(), self.assertRaisesMessage(DatabaseOperationForbidden, "SimpleTestCase"):
            Author.vinyl.create(name="must not land")


class OnlyOtherDatabases(TestCase):
    databases = {"serializable"}

    async def test_async_default_refused(self):
        with self.assertRaisesMessage(DatabaseOperationForbidden, "'default'"):
            await Author.vinyl.count()
        assert await Author.vinyl.using("serializable").count() == 0


class SharedTransaction(TestCase):
    """The tests run in name order: the last one checks that nothing was left behind."""

    @classmethod
    def setUpTestData(cls):
        cls.ann = Author.objects.create(name="Ann")  # class-level data, in TestCase's atomic

    async def test_a_async_writes_seen_by_django_and_back(self):
        assert await Author.vinyl.count() == 1  # setUpTestData's row, uncommitted
        await Author.vinyl.create(name="async")
        assert await sync_to_async(Author.objects.count)() == 2
        await sync_to_async(Author.objects.create)(name="sync")
        names = await Author.vinyl.order_by("name").values_list("name", flat=True)
        assert names == ["Ann", "async", "sync"]

    async def test_b_atomic_blocks_are_savepoints(self):
        async with atomic():
            await Book.vinyl.create(author=self.ann, title="kept")
        with pytest.raises(RuntimeError):
            async with atomic():
                await Book.vinyl.create(author=self.ann, title="rolled back")
                raise RuntimeError
        titles = await sync_to_async(lambda: list(Book.objects.values_list("title", flat=True)))()
        assert titles == ["kept"]

    async def test_c_on_commit_waits_for_the_test_transaction(self):
        calls = []
        queue = await sync_to_async(lambda: connections["default"].run_on_commit)()
        before = len(queue)
        async with atomic():
            on_commit(lambda: calls.append("block"))
        on_commit(lambda: calls.append("test"))
        assert calls == []  # as in Django: the test's transaction never commits
        assert len(queue) == before + 2  # queued on Django's connection, as sync code's are
        for _, callback, _ in queue[before:]:
            callback()  # what captureOnCommitCallbacks(execute=True) would do
        assert calls == ["block", "test"]

    async def test_d_streams_and_concurrent_tasks(self):
        await Author.vinyl.bulk_create([Author(name=f"n{i}") for i in range(30)])
        seen = [a.name async for a in Author.vinyl.order_by("pk").iterator(chunk_size=7)]
        assert len(seen) == 31
        counts = await asyncio.gather(*(Author.vinyl.count() for _ in range(5)))
        assert counts == [31] * 5

    def test_e_sync_test_sees_its_own_rows_only(self):
        assert list(Author.objects.values_list("name", flat=True)) == ["Ann"]
        assert Book.objects.count() == 0

    async def test_f_select_for_update_in_the_test_transaction(self):
        locked = await Author.vinyl.select_for_update().get(name="Ann")  # not autocommit
        assert locked.pk == self.ann.pk

    def test_g_event_loop_in_the_test_thread(self):
        # A sync test that runs a loop (asyncio.run): async mode works in the test's transaction.
        async def work():
            await Author.vinyl.create(name="in a loop")
            names = await Author.vinyl.order_by("name").values_list("name", flat=True)
            return names, await Author.vinyl.in_bulk([self.ann.pk])  # in_bulk: a worker thread

        Author.objects.create(name="sync")
        for run in range(2):
            names, found = asyncio.run(work())
            assert names == ["Ann", *["in a loop"] * (run + 1), "sync"]
            assert list(found) == [self.ann.pk]
        assert Author.objects.count() == 4

    async def test_h_loop_inside_a_replayed_function(self):
        from vinyl.compiler.replay import call_with_io

        async def count():
            return await Author.vinyl.count()

        def django_function():  # e.g. a model property that prefetching reaches
            with pytest.raises(RuntimeError, match="Query with sync code there"):
                asyncio.run(count())
            return Author.objects.count()  # sync code: run on the calling task

        assert await call_with_io(django_function) == 1

    async def test_i_atomic_without_savepoint_in_the_test_transaction(self):
        # As Django's atomic(savepoint=False) nested in the test's block: no statement of its
        # own, and a failure marks the test's transaction, as Django's does.
        with capture_queries() as log:
            async with atomic(savepoint=False):
                await Author.vinyl.create(name="no savepoint")
        assert [sql.split()[0] for sql, _ in log] == ["INSERT"]
        with pytest.raises(RuntimeError):
            async with atomic(savepoint=False):
                raise RuntimeError
        with pytest.raises(TransactionManagementError, match="An error occurred"):
            await Author.vinyl.count()

    def test_j_django_atomic_around_a_failing_async_query(self):
        # The test's own transaction.atomic() (Django's, sync) around a vinyl query that fails:
        # Django's savepoint rolls back and clears the mark, and vinyl goes on, as Django does.
        async def create(name):
            return await Author.vinyl.create(name=name)

        with pytest.raises(IntegrityError), transaction.atomic():
            asyncio.run(create(None))
        assert asyncio.run(create("after")).name == "after"
        assert Author.objects.count() == 2

    def test_z_nothing_left_behind(self):
        assert Author.objects.count() == 1


class Transactional(TransactionTestCase):
    async def test_pools_on_the_test_database(self):
        await Author.vinyl.create(name="committed")
        assert await sync_to_async(Author.objects.count)() == 1
        name = await sync_to_async(lambda: connections["default"].settings_dict["NAME"])()
        assert name.startswith("vinyl_test_")


EARLY_POOL = textwrap.dedent(
    """
    import asyncio, os, sys
    sys.path.insert(0, {root!r})
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    import django
    django.setup()
    from django.test.utils import setup_databases, setup_test_environment, teardown_databases
    from vinyl.connection import SINGLE, run

    async def current_database():
        return await run("default", "SELECT current_database()", None, SINGLE)

    with asyncio.Runner() as runner:  # one event loop, and its pool, for the whole script
        before = runner.run(current_database())[0]
        setup_test_environment()
        old = setup_databases(verbosity=0, interactive=False)
        try:
            after = runner.run(current_database())[0]
        finally:
            runner.run(__import__("vinyl").close_pools())
            teardown_databases(old, verbosity=0)
    print(before, after)
    """
)


def test_a_pool_opened_before_the_test_database_follows_it(db):
    """A pool first used before setup_databases() must not keep the configured NAME."""
    env = {**os.environ}
    env.pop("VINYL_DATABASE_NAME", None)
    proc = subprocess.run(
        [sys.executable, "-c", EARLY_POOL.format(root=str(ROOT))],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    before, after = proc.stdout.split()
    assert after.startswith("vinyl_test_") and before != after
