"""Sync mode: ``with vinyl.atomic()`` is Django's transaction on Django's connection.

django.db.transaction.atomic and vinyl.atomic nest inside each other in any order and share one
transaction with ``Model.objects``; a second thread is a second transaction.
"""

import asyncio
import threading
import time

import pytest
from django.db import OperationalError, connections, transaction
from django.db.transaction import TransactionManagementError

import vinyl
from tests.helpers import Boom, Outside
from tests.testapp.models import Author, Book


@pytest.fixture
def outside(db):
    sessions = Outside()
    yield sessions
    try:
        assert sessions.sessions("idle in transaction") == 0
    finally:
        sessions.close()


def test_with_block_commits_and_rolls_back(outside):
    with vinyl.atomic():
        Author.objects.create(name="a")
        assert vinyl.get_rollback() is False
        assert [a.name for a in Author.vinyl.all()] == ["a"]
        assert outside.names() == []
    assert outside.names() == ["a"]
    with pytest.raises(Boom), vinyl.atomic():
        Author.objects.create(name="b")
        assert Author.vinyl.count() == 2
        raise Boom
    assert outside.names() == ["a"]
    assert connections["default"].get_autocommit()


def test_django_atomic_inside_vinyl_atomic(outside):
    with vinyl.atomic():
        Author.objects.create(name="outer")
        with transaction.atomic():
            Author.objects.create(name="inner")
            assert connections["default"].in_atomic_block
            assert Author.vinyl.count() == 2
        with pytest.raises(Boom), transaction.atomic():
            Author.objects.create(name="rolled back")
            raise Boom
        assert sorted(Author.vinyl.values_list("name", flat=True)) == ["inner", "outer"]
        assert outside.names() == []
    assert outside.names() == ["outer", "inner"]


def test_vinyl_atomic_inside_django_atomic(outside):
    with transaction.atomic():
        Author.objects.create(name="outer")
        with vinyl.atomic():
            Author.objects.create(name="inner")
            assert len(connections["default"].savepoint_ids) == 1
        with pytest.raises(Boom), vinyl.atomic():
            Author.objects.create(name="rolled back")
            assert Author.vinyl.count() == 3
            raise Boom
        with vinyl.atomic():
            Author.objects.create(name="rolled back too")
            vinyl.set_rollback(True)  # the vinyl flag is Django's flag
            assert transaction.get_rollback() is True
        assert Author.vinyl.count() == 2
        assert outside.names() == []
    assert outside.names() == ["outer", "inner"]


def test_vinyl_atomic_rollback_inside_django_atomic_with_savepoint_false(outside):
    with pytest.raises(TransactionManagementError), transaction.atomic():
        Author.objects.create(name="outer")
        with pytest.raises(Boom), vinyl.atomic(savepoint=False):
            raise Boom
        assert transaction.get_rollback() is True
        Author.vinyl.count()  # Django refuses queries until the block ends
    assert outside.names() == []


def test_durable_vinyl_atomic_inside_django_atomic(outside):
    with transaction.atomic():
        with pytest.raises(RuntimeError, match="durable"), vinyl.atomic(durable=True):
            pass
    with vinyl.atomic(durable=True), transaction.atomic():
        Author.objects.create(name="durable")
    assert outside.names() == ["durable"]


def test_on_commit_of_both_libraries_in_one_queue(outside):
    calls = []
    with transaction.atomic():
        transaction.on_commit(lambda: calls.append("django"))
        with vinyl.atomic():
            vinyl.on_commit(lambda: calls.append("vinyl"))

        async def async_callback():
            calls.append("async vinyl")

        vinyl.on_commit(async_callback)
        transaction.on_commit(lambda: calls.append("django again"))
        assert calls == []
    assert calls == ["django", "vinyl", "async vinyl", "django again"]


def test_decorator_of_a_plain_function(outside):
    @vinyl.atomic
    def create(name, fail=False):
        Author.objects.create(name=name)
        assert connections["default"].in_atomic_block
        if fail:
            raise Boom
        return Author.vinyl.count()

    assert create("a") == 1
    with pytest.raises(Boom):
        create("b", fail=True)
    assert outside.names() == ["a"]
    assert create.__name__ == "create"


def test_wrong_form_for_the_mode_is_a_clear_error(db):
    async def enter_async_in_sync_mode():
        with vinyl.sync_mode():
            async with vinyl.atomic():
                pass

    with pytest.raises(TypeError, match="use `with atomic\\(\\):`"):
        asyncio.run(enter_async_in_sync_mode())


def _in_thread(target):
    """Run *target* in a thread of its own; its Django connection is closed when it ends."""
    box = {}

    def main():
        try:
            box["result"] = target()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            box["error"] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=main)
    thread.start()
    return thread, box


def _wait_for_lock_waiter(outside, timeout=5.0):
    deadline = time.monotonic() + timeout
    while (
        outside.conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock'"
        ).fetchone()[0]
        == 0
    ):
        assert time.monotonic() < deadline, "the second transaction never waited for the lock"
        time.sleep(0.01)


def test_select_for_update_blocks_a_second_thread(outside):
    ann = Author.objects.create(name="Ann")
    Book.objects.create(author=ann, title="A", pages=1)

    def second():
        with vinyl.atomic():
            return Book.vinyl.select_for_update().get(title="A").pages

    def second_nowait():
        with vinyl.atomic():
            return Book.vinyl.select_for_update(nowait=True).get(title="A").pages

    with vinyl.atomic():
        book = Book.vinyl.select_for_update().get(title="A")
        thread, box = _in_thread(second_nowait)
        thread.join()
        assert isinstance(box["error"], OperationalError)
        thread, box = _in_thread(second)
        _wait_for_lock_waiter(outside)
        Book.objects.filter(pk=book.pk).update(pages=2)
    thread.join(10)
    assert box == {"result": 2}  # it waited for the commit, then read the new row
