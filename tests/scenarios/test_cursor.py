"""vinyl.cursor(): raw SQL on a DB-API cursor, written once and run in both modes.

Universal code opens the cursor with ``yield vinyl.cursor().open()`` and closes it in ``finally``;
the ``with`` / ``async with`` forms are tested mode by mode (tests/sync/test_cursor_sync.py,
tests/async/test_cursor_async.py).
"""

import datetime
from decimal import Decimal

import pytest
from django.db import IntegrityError, ProgrammingError, connection
from django.db.transaction import TransactionManagementError

import vinyl
from tests.helpers import Boom, Outside, names
from tests.testapp.models import Author, Book
from vinyl import atomic, maybe_async
from vinyl.connection import capture_queries
from vinyl.testing import both_modes

BOOKS = (
    "SELECT b.id, b.title, b.pages, b.price, b.published, a.name FROM testapp_book b "
    "JOIN testapp_author a ON a.id = b.author_id WHERE b.pages >= %s ORDER BY b.id"
)


@pytest.fixture
def books(db):
    ann = Author.objects.create(name="Ann")
    published = datetime.datetime(2024, 3, 1, 12, 30, tzinfo=datetime.UTC)
    for n in range(5):
        Book.objects.create(
            author=ann,
            title=f"B{n}",
            pages=100 * n,
            price=Decimal(f"{n}.25"),
            published=published + datetime.timedelta(days=n),
        )
    # Django's own cursor's answer, for comparison.
    with connection.cursor() as django_cursor:
        django_cursor.execute(BOOKS, [100])
        rows = django_cursor.fetchall()
        columns = [column.name for column in django_cursor.description]
    return rows, columns


@maybe_async
def fetch(sql, params=None, using=None):
    """Run *sql* on a fresh vinyl cursor; return (description, rows, rowcount)."""
    cursor = yield vinyl.cursor(using).open()
    try:
        yield cursor.execute(sql, params)
        rows = (yield cursor.fetchall()) if cursor.description is not None else None
        return cursor.description, rows, cursor.rowcount
    finally:
        yield cursor.close()


@both_modes
def test_rows_description_and_rowcount_equal_djangos_cursor(books):
    django_rows, django_columns = books
    description, rows, rowcount = yield fetch(BOOKS, [100])
    assert rows == django_rows
    assert [type(v) for v in rows[0]] == [type(v) for v in django_rows[0]]
    assert rows[0][4].tzinfo is django_rows[0][4].tzinfo  # Django's time zone handling
    assert [column.name for column in description] == django_columns
    assert rowcount == 4


@both_modes
def test_fetchone_fetchmany_fetchall_and_iteration_share_one_position(books):
    cursor = yield vinyl.cursor().open()
    try:
        assert (yield cursor.execute(BOOKS, [0])) is cursor
        first = yield cursor.fetchone()
        assert first[1] == "B0"
        assert [row[1] for row in (yield cursor.fetchmany(2))] == ["B1", "B2"]
        assert [row[1] for row in (yield cursor.fetchmany())] == ["B3"]  # arraysize 1
        cursor.arraysize = 5
        assert [row[1] for row in (yield cursor.fetchmany(0))] == ["B4"]
        assert (yield cursor.fetchone()) is None
        assert (yield cursor.fetchall()) == []
        yield cursor.execute("SELECT generate_series(1, 3)")
        assert [n for (n,) in cursor] == [1, 2, 3]
        yield cursor.execute("SELECT %(a)s::int + %(b)s::int, '100%%'", {"a": 1, "b": 2})
        assert (yield cursor.fetchall()) == [(3, "100%")]
        yield cursor.execute("SELECT '100%'")  # no parameters: % is not a placeholder
        assert (yield cursor.fetchone()) == ("100%",)
    finally:
        yield cursor.close()


@both_modes
def test_writes_rowcount_and_executemany(db):
    cursor = yield vinyl.cursor().open()
    try:
        yield cursor.executemany(
            "INSERT INTO testapp_author (name) VALUES (%s)", [("a",), ("b",), ("c",)]
        )
        assert cursor.rowcount == 3
        assert cursor.description is None
        yield cursor.execute(
            "UPDATE testapp_author SET born = %s WHERE name <> %s", [datetime.date(2000, 1, 2), "b"]
        )
        assert cursor.rowcount == 2
        with pytest.raises(ProgrammingError, match="didn't produce records"):
            yield cursor.fetchone()
        yield cursor.executemany(
            "DELETE FROM testapp_author WHERE name = %(n)s", ({"n": n} for n in ["a", "zz"])
        )
        assert cursor.rowcount == 1
    finally:
        yield cursor.close()
    assert (yield names()) == ["b", "c"]
    assert (yield Author.vinyl.filter(born=datetime.date(2000, 1, 2)).count()) == 1


@both_modes
def test_database_errors_are_djangos_and_the_cursor_goes_on(db):
    cursor = yield vinyl.cursor().open()
    try:
        yield cursor.execute("INSERT INTO testapp_author (id, name) VALUES (1, 'a')")
        with pytest.raises(IntegrityError):
            yield cursor.execute("INSERT INTO testapp_author (id, name) VALUES (1, 'b')")
        with pytest.raises(ProgrammingError, match="no_such_table"):
            yield cursor.execute("SELECT * FROM no_such_table")
        with pytest.raises(ProgrammingError, match="no result available"):
            yield cursor.fetchall()
        yield cursor.execute("SELECT name FROM testapp_author")  # autocommit: still usable
        assert (yield cursor.fetchall()) == [("a",)]
    finally:
        yield cursor.close()


@both_modes
def test_an_unopened_or_closed_cursor_says_how_to_open_one(db):
    cursor = vinyl.cursor()
    with pytest.raises(ProgrammingError, match=r"vinyl.cursor\(\).open\(\)"):
        yield cursor.execute("SELECT 1")
    yield cursor.open()
    with pytest.raises(ProgrammingError, match="already open"):
        yield cursor.open()
    yield cursor.close()
    assert cursor.closed
    with pytest.raises(ProgrammingError, match="closed"):
        yield cursor.execute("SELECT 1")
    with pytest.raises(ProgrammingError, match="closed"):
        yield cursor.fetchone()
    yield cursor.close()  # closing twice is harmless


@both_modes
def test_one_connection_for_the_cursors_life(db):
    cursor = yield vinyl.cursor().open()
    try:
        yield cursor.execute("SELECT pg_backend_pid()")
        (pid,) = yield cursor.fetchone()
        yield cursor.execute("SELECT pg_backend_pid()")
        assert (yield cursor.fetchone()) == (pid,)
    finally:
        yield cursor.close()


@both_modes
def test_inside_atomic_the_cursor_runs_in_the_blocks_transaction(db):
    outside = Outside()
    try:

        @atomic
        @maybe_async
        def work():
            cursor = yield vinyl.cursor().open()
            try:
                yield cursor.execute("INSERT INTO testapp_author (name) VALUES (%s)", ["a"])
                yield cursor.execute("SELECT txid_current()")
                (txid,) = yield cursor.fetchone()
            finally:
                yield cursor.close()
            # The ORM sees the uncommitted row on the same transaction; nobody else does.
            assert (yield names()) == ["a"]
            assert outside.names() == []
            (orm_txid,) = (yield fetch("SELECT txid_current()"))[1][0]
            assert orm_txid == txid
            raise Boom

        with pytest.raises(Boom):
            yield work()
        assert outside.names() == []
        assert (yield names()) == []
    finally:
        outside.close()


@both_modes
def test_a_failed_statement_in_atomic_blocks_the_cursor_until_the_block_ends(db):
    @atomic
    @maybe_async
    def work():
        cursor = yield vinyl.cursor().open()
        try:
            try:

                @atomic
                @maybe_async
                def inner():
                    yield cursor.execute("SELECT 1/0")

                yield inner()
            except Exception as exc:  # Django's DataError, rolled back to the savepoint
                assert type(exc).__module__ == "django.db.utils"
            yield cursor.execute("SELECT 1")  # the savepoint rollback left the block usable
            assert (yield cursor.fetchone()) == (1,)

            @atomic(savepoint=False)
            @maybe_async
            def no_savepoint():
                yield cursor.execute("SELECT 1/0")

            with pytest.raises(Exception, match="division by zero"):
                yield no_savepoint()
            with pytest.raises(TransactionManagementError, match="atomic"):
                yield cursor.execute("SELECT 1")
        finally:
            yield cursor.close()

    yield work()


@both_modes
def test_statements_are_seen_by_capture_queries(db):
    with capture_queries() as log:
        yield fetch("SELECT %s::int", [7])
    assert log == [("SELECT %s::int", [7])]
