"""atomic(), on_commit(), get_rollback()/set_rollback() and select_for_update(), in both modes.

The universal form of a transaction is ``@atomic`` on a ``@maybe_async`` operation: sync mode runs
it in a ``with`` block, async mode in an ``async with`` block. The ``with`` / ``async with`` forms
are tested mode by mode in tests/sync/test_django_interop.py and tests/async/.

What other sessions see is read through plain psycopg connections (:class:`Outside`), never
through vinyl or Django.
"""

import logging

import psycopg
import pytest
from django.db import IntegrityError, InternalError, OperationalError, connections
from django.db.transaction import TransactionManagementError

from tests.helpers import Boom, Outside, names
from tests.testapp.models import Author, Book
from vinyl import atomic, get_rollback, maybe_async, on_commit, set_rollback
from vinyl.connection import NO_RESULTS, SINGLE, capture_queries, run
from vinyl.testing import both_modes
from vinyl.transaction import mark_for_rollback_on_error


@pytest.fixture
def outside(db):
    sessions = Outside()
    yield sessions
    try:
        # Whatever a test did, no session may be left inside a transaction.
        assert sessions.sessions("idle in transaction") == 0
        assert sessions.sessions("idle in transaction (aborted)") == 0
    finally:
        sessions.close()
        connections["serializable"].close()


def insert(name, using="default"):
    return run(using, "INSERT INTO testapp_author (name) VALUES (%s)", [name], NO_RESULTS)


# -- commit and rollback ------------------------------------------------------------------------


@both_modes
def test_commit_is_seen_by_others_after_the_block(outside):
    @atomic
    @maybe_async
    def work(first, second):
        yield insert(first)
        yield insert(second)
        assert (yield names()) == [first, second]
        assert outside.names() == []  # not committed yet
        return "result"

    assert (yield work("a", second="b")) == "result"
    assert outside.names() == ["a", "b"]


@both_modes
def test_exception_rolls_back_and_propagates(outside):
    @atomic
    @maybe_async
    def work():
        yield insert("a")
        assert (yield names()) == ["a"]
        raise Boom

    with pytest.raises(Boom):
        yield work()
    assert outside.names() == []
    assert (yield names()) == []  # and the connection is usable afterwards


@both_modes
def test_database_error_rolls_back(outside):
    @atomic
    @maybe_async
    def work():
        yield insert("a")
        yield run(
            "default",
            "INSERT INTO testapp_author (id, name) VALUES (1, 'x'), (1, 'y')",
            None,
            NO_RESULTS,
        )

    with pytest.raises(IntegrityError):
        yield work()
    assert outside.names() == []
    yield insert("b")
    assert outside.names() == ["b"]


@pytest.mark.parametrize("fail_at", [0, 1, 2, 3])
@both_modes
def test_nested_savepoints_three_deep(outside, fail_at):
    """Level n inserts L<n>, runs level n+1 (catching its failure), then fails if n == fail_at."""

    @atomic
    @maybe_async
    def level(n):
        yield insert(f"L{n}")
        if n < 3:
            try:
                yield level(n + 1)
            except Boom:
                yield insert(f"caught{n}")  # the transaction goes on after a savepoint rollback
        else:
            assert (yield names()) == ["L1", "L2", "L3"]
            assert outside.names() == []
        if n == fail_at:
            raise Boom

    expected = {
        0: ["L1", "L2", "L3"],
        1: [],
        2: ["L1", "caught1"],
        3: ["L1", "L2", "caught2"],
    }[fail_at]
    if fail_at == 1:
        with pytest.raises(Boom):
            yield level(1)
    else:
        yield level(1)
    assert outside.names() == expected


@both_modes
def test_savepoint_false_marks_the_outer_block_for_rollback(outside):
    @maybe_async
    def fail():
        yield insert("inner")
        raise Boom

    @atomic
    @maybe_async
    def outer():
        yield insert("outer")
        with pytest.raises(Boom):
            yield atomic(savepoint=True)(fail)()
        assert get_rollback() is False  # the savepoint rolled back: the block goes on
        yield insert("after savepoint")
        with pytest.raises(Boom):
            yield atomic(savepoint=False)(fail)()
        assert get_rollback() is True  # nothing to roll back to but the whole transaction
        with pytest.raises(TransactionManagementError, match="until the end of the 'atomic'"):
            yield insert("after no savepoint")
        return "exited normally"

    assert (yield outer()) == "exited normally"
    assert outside.names() == []


@both_modes
def test_set_rollback_and_get_rollback(outside):
    with pytest.raises(TransactionManagementError, match="outside of an 'atomic' block"):
        get_rollback()
    with pytest.raises(TransactionManagementError, match="outside of an 'atomic' block"):
        set_rollback(True)

    @atomic
    @maybe_async
    def inner():
        yield insert("inner")
        set_rollback(True)
        assert get_rollback() is True

    @atomic
    @maybe_async
    def outer(rollback):
        yield insert("outer")
        assert get_rollback() is False
        yield inner()  # rolls back its savepoint only
        assert get_rollback() is False
        assert (yield names()) == ["outer"]
        if rollback:
            set_rollback(True)
            assert get_rollback() is True
            set_rollback(False)
            assert get_rollback() is False
            set_rollback(True)
        return rollback

    assert (yield outer(True)) is True
    assert outside.names() == []
    assert (yield outer(False)) is False
    assert outside.names() == ["outer"]


@both_modes
def test_mark_for_rollback_on_error(outside):
    with pytest.raises(Boom), mark_for_rollback_on_error():  # outside a block: no effect
        raise Boom

    @atomic
    @maybe_async
    def work():
        yield insert("a")
        with pytest.raises(Boom), mark_for_rollback_on_error():
            yield insert("b")
            raise Boom
        assert get_rollback() is True
        with pytest.raises(TransactionManagementError) as info:
            yield insert("c")
        assert isinstance(info.value.__cause__, Boom)

    yield work()
    assert outside.names() == []


@both_modes
def test_durable_block_refuses_nesting(outside):
    @atomic(durable=True)
    @maybe_async
    def durable():
        yield insert("durable")

    @atomic
    @maybe_async
    def outer():
        yield insert("outer")
        with pytest.raises(RuntimeError, match="durable atomic block cannot be nested"):
            yield durable()
        yield insert("outer again")

    yield durable()
    assert outside.names() == ["durable"]
    yield outer()
    assert outside.names() == ["durable", "outer", "outer again"]


@both_modes
def test_bare_decorator_and_using(outside):
    @atomic
    @maybe_async
    def bare():
        yield insert("bare")

    @atomic("default")
    @maybe_async
    def positional():
        yield insert("positional")

    @atomic(using="default", savepoint=False)
    @maybe_async
    def keyword():
        yield insert("keyword")
        return (yield names())

    yield bare()
    yield positional()
    assert (yield keyword()) == ["bare", "positional", "keyword"]
    assert outside.names() == ["bare", "positional", "keyword"]


# -- on_commit ----------------------------------------------------------------------------------


@both_modes
def test_on_commit_runs_in_order_after_the_outermost_commit(outside):
    calls = []

    def record(name):
        def callback():
            calls.append((name, outside.names()))

        return callback

    async def async_callback():
        calls.append(("async", outside.names()))

    @atomic
    @maybe_async
    def inner():
        yield on_commit(record("inner"))
        yield on_commit(async_callback)

    @atomic
    @maybe_async
    def outer():
        yield insert("a")
        yield on_commit(record("first"))
        yield inner()
        assert calls == []  # a released savepoint is no commit
        yield on_commit(record("last"))
        assert calls == []

    yield outer()
    assert calls == [
        ("first", ["a"]),
        ("inner", ["a"]),
        ("async", ["a"]),
        ("last", ["a"]),
    ]


@both_modes
def test_on_commit_outside_a_transaction_runs_at_once(outside):
    calls = []

    async def async_callback():
        calls.append("async")

    yield on_commit(lambda: calls.append("sync"))
    assert calls == ["sync"]
    yield on_commit(async_callback)
    assert calls == ["sync", "async"]


@both_modes
def test_on_commit_outside_a_transaction_needs_no_await(outside):
    """Django's rule: outside a transaction the callback runs at once (issue 11: async mode
    returned a coroutine, and without `await` the callback never ran)."""
    calls = []
    on_commit(lambda: calls.append("sync"))  # not awaited, not yielded
    assert calls == ["sync"]
    with pytest.raises(KeyError):
        on_commit(lambda: {}["missing"])  # an error reaches the caller at once, as in Django
    on_commit(lambda: {}["missing"], robust=True)  # logged
    yield None


@both_modes
def test_on_commit_not_run_on_rollback_and_dropped_with_its_savepoint(outside):
    calls = []

    @atomic
    @maybe_async
    def failing_inner():
        yield on_commit(lambda: calls.append("rolled back savepoint"))
        raise Boom

    @atomic
    @maybe_async
    def outer(fail):
        yield on_commit(lambda: calls.append("before"))
        try:
            yield failing_inner()
        except Boom:
            pass
        yield on_commit(lambda: calls.append("after"))
        if fail:
            raise Boom

    with pytest.raises(Boom):
        yield outer(True)
    assert calls == []
    yield outer(False)
    assert calls == ["before", "after"]


@both_modes
def test_on_commit_robust_logs_and_continues(outside, caplog):
    calls = []

    def bad():
        raise ValueError("callback failed")

    @atomic
    @maybe_async
    def work(robust):
        yield insert(f"robust={robust}")
        yield on_commit(lambda: calls.append("first"))
        yield on_commit(bad, robust=robust)
        yield on_commit(lambda: calls.append("last"))

    with caplog.at_level(logging.ERROR):
        yield work(True)
    assert calls == ["first", "last"]
    assert "callback failed" in caplog.text
    assert "bad" in caplog.text

    calls.clear()
    with pytest.raises(ValueError, match="callback failed"):
        yield work(False)
    assert calls == ["first"]  # the error stops the callbacks, after the commit
    assert outside.names() == ["robust=True", "robust=False"]


# -- select_for_update --------------------------------------------------------------------------


@pytest.fixture
def books(outside):
    ann = Author.objects.create(name="Ann")
    for title in "ABC":
        Book.objects.create(author=ann, title=title)
    return outside


@both_modes
def test_select_for_update_needs_a_transaction(books):
    for qs in (
        Book.vinyl.select_for_update(),
        Book.vinyl.select_for_update(nowait=True).filter(title="A"),
        Book.vinyl.select_for_update(skip_locked=True),
        Book.vinyl.select_for_update(of=("self",)).select_related("author"),
        Book.vinyl.select_for_update(no_key=True),
    ):
        with pytest.raises(TransactionManagementError, match="outside of a transaction"):
            yield qs
    with pytest.raises(TransactionManagementError, match="outside of a transaction"):
        yield Book.vinyl.select_for_update().get(title="A")


@both_modes
def test_select_for_update_locks_until_the_block_ends(books):
    outside = books

    @atomic
    @maybe_async
    def locked():
        found = yield Book.vinyl.select_for_update().filter(title="A")
        assert [b.title for b in found] == ["A"]
        with pytest.raises(psycopg.errors.LockNotAvailable):
            outside.try_lock("testapp_book", "title", "A")
        assert outside.try_lock("testapp_book", "title", "B")  # only A is locked
        book = yield Book.vinyl.select_for_update().get(title="B")
        assert book.title == "B"
        with pytest.raises(psycopg.errors.LockNotAvailable):
            outside.try_lock("testapp_book", "title", "B")
        with capture_queries() as queries:
            found = yield Book.vinyl.select_for_update(no_key=True).filter(title="C")
        assert [b.title for b in found] == ["C"]
        assert "FOR NO KEY UPDATE" in queries[0][0]
        with pytest.raises(psycopg.errors.LockNotAvailable):
            outside.try_lock("testapp_book", "title", "C")

    yield locked()
    assert outside.try_lock("testapp_book", "title", "A")
    assert outside.try_lock("testapp_book", "title", "B")


@both_modes
def test_select_for_update_nowait_and_skip_locked(books):
    outside = books
    holder = outside.hold_lock("A")

    @maybe_async
    def nowait():
        yield Book.vinyl.select_for_update(nowait=True).filter(title="A")

    @atomic
    @maybe_async
    def work():
        with pytest.raises(OperationalError, match="could not obtain lock"):
            yield atomic(nowait)()  # a savepoint, so the transaction goes on
        free = yield Book.vinyl.select_for_update(skip_locked=True).order_by("title")
        assert [b.title for b in free] == ["B", "C"]
        with pytest.raises(OperationalError):
            yield nowait()
        # As in Django: a failed query does not mark the block, PostgreSQL refuses what follows
        # (and the commit at the end of the block rolls back).
        assert get_rollback() is False
        with pytest.raises(InternalError, match="current transaction is aborted"):
            yield names()

    yield work()
    holder.rollback()

    @atomic
    @maybe_async
    def after_release():
        found = yield Book.vinyl.select_for_update(nowait=True).filter(title="A")
        return [b.title for b in found]

    assert (yield after_release()) == ["A"]


@both_modes
def test_select_for_update_of(books):
    outside = books

    @atomic
    @maybe_async
    def work(of):
        qs = Book.vinyl.select_related("author").filter(title="A")
        qs = qs.select_for_update(of=of) if of else qs.select_for_update()
        with capture_queries() as queries:
            found = yield qs
        assert found[0].author.name == "Ann"
        with pytest.raises(psycopg.errors.LockNotAvailable):
            outside.try_lock("testapp_book", "title", "A")
        if of:
            assert 'FOR UPDATE OF "testapp_book"' in queries[0][0]
            assert outside.try_lock("testapp_author", "name", "Ann")
        else:
            with pytest.raises(psycopg.errors.LockNotAvailable):
                outside.try_lock("testapp_author", "name", "Ann")

    yield work(("self",))
    yield work(None)


# -- isolation level ----------------------------------------------------------------------------


@both_modes
def test_isolation_level_from_database_options(outside):
    @maybe_async
    def level(using):
        row = yield run(using, "SHOW transaction_isolation", None, SINGLE)
        return row[0]

    assert (yield atomic(using="serializable")(level)("serializable")) == "serializable"
    assert (yield atomic(level)("default")) == "read committed"

    @atomic(using="serializable")
    @maybe_async
    def nested():
        yield insert("serializable", using="serializable")
        yield atomic(using="serializable")(insert)("nested", using="serializable")
        return (yield level("serializable"))

    assert (yield nested()) == "serializable"
    assert outside.names() == ["serializable", "nested"]


@both_modes
def test_serialization_failure_at_commit_rolls_back_and_raises(outside, vinyl_mode):
    """Write skew under SERIALIZABLE: the second transaction to commit fails at COMMIT."""
    other = outside.connect(autocommit=False)
    other.execute("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
    other.execute("SELECT count(*) FROM testapp_author").fetchone()

    @atomic(using="serializable")
    @maybe_async
    def work():
        yield run("serializable", "SELECT count(*) FROM testapp_author", None, SINGLE)
        yield insert("vinyl", using="serializable")
        other.execute("INSERT INTO testapp_author (name) VALUES ('other')")
        other.commit()  # the first to commit wins

    with (
        capture_queries() as queries,
        pytest.raises(OperationalError, match="could not serialize access"),
    ):
        yield work()
    if vinyl_mode == "async":  # vinyl runs the COMMIT (Django's connection does in sync mode)
        assert [sql for sql, _ in queries][-2:] == ["COMMIT", "ROLLBACK"]
    assert outside.names() == ["other"]
    yield insert("after")  # the connection is usable again
    assert outside.names() == ["other", "after"]


@both_modes
def test_connection_killed_inside_the_block(outside):
    """The server ends the session mid-transaction: the block raises, nothing is committed, and
    the next transaction runs on a new connection."""

    @atomic
    @maybe_async
    def work():
        yield insert("lost")
        (pid,) = yield run("default", "SELECT pg_backend_pid()", None, SINGLE)
        outside.conn.execute("SELECT pg_terminate_backend(%s)", [pid])
        yield insert("never")

    with pytest.raises(OperationalError):
        yield work()
    assert outside.names() == []

    @atomic
    @maybe_async
    def again():
        yield insert("after")

    yield again()
    assert outside.names() == ["after"]
