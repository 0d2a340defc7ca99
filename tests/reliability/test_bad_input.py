"""Bad input in both modes: each gets the error Django's own ORM raises for it (class and
message), and the database is unchanged afterwards (row counts of every table before and after).

``CASES`` maps a name to ``(operation, error class, message pattern)``; an operation takes a
model and a manager name (``"vinyl"`` or Django's ``"objects"``) and returns a queryset to
evaluate or the result of a terminal method. ``test_django_raises_the_same`` runs every case on
``Model.objects`` to prove the expected errors are Django's.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from decimal import Decimal

import pytest
from django.core.exceptions import FieldDoesNotExist, FieldError, ValidationError
from django.db import connections
from django.db.models import F, Sum
from django.db.models.query import QuerySet
from django.db.utils import DataError, IntegrityError

from tests.testapp.models import AllFields, Author, Book
from vinyl import AwaitableInSyncModeError, ImplicitQueryError, atomic, maybe_async, sync_mode
from vinyl.connection import MULTI, run
from vinyl.testing import both_modes

NUL = "a\x00b"


def m(model, manager):
    return getattr(model, manager)


CASES = {
    # unknown names
    "unknown field in filter": (
        lambda v: m(Author, v).filter(nme="x"), FieldError, "Cannot resolve keyword 'nme'"),
    "unknown lookup": (
        lambda v: m(Author, v).filter(name__nope="x"), FieldError, "Unsupported lookup 'nope'"),
    "unknown field in get": (
        lambda v: m(Author, v).get(nme="x"), FieldError, "Cannot resolve keyword 'nme'"),
    "unknown field in order_by": (
        lambda v: m(Author, v).order_by("nme"), FieldError, "Cannot resolve keyword 'nme'"),
    "unknown field in values": (
        lambda v: m(Author, v).values("nme"), FieldError, "Cannot resolve keyword 'nme'"),
    "unknown field in aggregate": (
        lambda v: m(Author, v).aggregate(Sum("nme")), FieldError, "Cannot resolve keyword 'nme'"),
    "unknown field in create": (
        lambda v: m(Author, v).create(nme="x"), TypeError, "unexpected keyword arguments: 'nme'"),
    "unknown field in update": (
        lambda v: m(Author, v).update(nme="x"), FieldDoesNotExist, "has no field named .nme."),
    "SQL in an alias": (
        lambda v: m(Author, v).values(**{"x; DROP TABLE testapp_author": F("name")}),
        ValueError, "Column aliases cannot contain"),
    # wrong value types
    "text for an integer": (
        lambda v: m(Book, v).filter(pages="many"), ValueError,
        "Field 'pages' expected a number but got 'many'"),
    "list for a primary key": (
        lambda v: m(Author, v).filter(pk=[1]), TypeError, "Field 'id' expected a number"),
    "text for a date": (
        lambda v: m(Author, v).filter(born="yesterday"), ValidationError, "invalid date format"),
    "text for a UUID": (
        lambda v: m(AllFields, v).filter(uuid="nope"), ValidationError, "is not a valid UUID"),
    "text for a date in create": (
        lambda v: m(Author, v).create(name="x", born="yesterday"), ValidationError,
        "invalid date format"),
    "object in a JSONField": (
        lambda v: m(AllFields, v).create(data=object()), TypeError, "not JSON serializable"),
    # values PostgreSQL rejects
    "NUL byte in text (create)": (
        lambda v: m(Author, v).create(name=NUL), DataError, "NUL"),
    "NUL byte in text (filter)": (
        lambda v: m(Author, v).filter(name=NUL), DataError, "NUL"),
    "NUL byte in text (update)": (
        lambda v: m(Author, v).update(name=NUL), DataError, "NUL"),
    "integer out of range": (
        lambda v: m(Book, v).update(pages=2**31), DataError, "integer out of range"),
    "smallint out of range": (
        lambda v: m(AllFields, v).create(small=2**15), DataError, "smallint out of range"),
    "bigint out of range": (
        lambda v: m(AllFields, v).create(big=2**63), DataError, "out of range"),
    "negative positive integer": (
        lambda v: m(AllFields, v).create(positive=-1), IntegrityError, "check constraint"),
    "decimal overflow": (
        lambda v: m(AllFields, v).create(decimal=Decimal("1e20")), DataError,
        "numeric field overflow"),
    "text too long": (
        lambda v: m(Author, v).create(name="x" * 101), DataError, "value too long"),
    "NaN in JSON": (
        lambda v: m(AllFields, v).create(data={"x": float("nan")}), DataError,
        "invalid input syntax for type json"),
    "NUL escape in JSON": (
        lambda v: m(AllFields, v).create(data={"x": NUL}), DataError, "unsupported Unicode"),
    "text in an integer array": (
        lambda v: m(AllFields, v).create(numbers=["one"]), ValueError,
        "expected a number but got 'one'"),
}  # fmt: skip

# Filters whose value cannot match: Django answers without an error, vinyl the same.
NO_MATCH = {
    "integer out of range in a filter": lambda v: m(Book, v).filter(pages=2**40),
    "empty __in": lambda v: m(Book, v).filter(pk__in=[]),
}


@pytest.fixture
def seeded(server):
    ann = Author.objects.create(name="Ann")
    Book.objects.create(author=ann, title="T", pages=10)
    AllFields.objects.create(char="x")
    connections["default"].close()
    return server


@maybe_async
def evaluate(value):
    """The value of a queryset or of a terminal method's result, in the current mode."""
    return (yield value)


@pytest.mark.parametrize("case", list(CASES))
@both_modes
def test_bad_input(seeded, case):
    op, error, message = CASES[case]
    before = seeded.counts()
    with pytest.raises(error, match=message) as info:
        yield evaluate(op("vinyl"))
    assert type(info.value) is error
    assert seeded.counts() == before
    assert (yield Author.vinyl.count()) == 1  # the connection still works


@pytest.mark.parametrize("case", list(CASES))
def test_django_raises_the_same(seeded, case):
    op, error, message = CASES[case]
    with pytest.raises(error, match=message) as info:
        value = op("objects")
        if isinstance(value, QuerySet):
            list(value)
    assert type(info.value) is error


@pytest.mark.parametrize("case", list(NO_MATCH))
@both_modes
def test_values_that_cannot_match(seeded, case):
    before = seeded.counts()
    assert (yield evaluate(NO_MATCH[case]("vinyl"))) == []
    assert seeded.counts() == before


@pytest.mark.parametrize("case", list(NO_MATCH))
def test_django_matches_nothing_either(seeded, case):
    assert list(NO_MATCH[case]("objects")) == []


# -- SQL-looking strings are parameters, never SQL ---------------------------------------------

SQL_STRINGS = [
    "'; DROP TABLE testapp_author; --",
    "Robert'); DROP TABLE testapp_book;--",
    '" OR 1=1 --',
    "' OR ''='",
    "%s",
    "%(name)s",
    "%%",
    "$1",
    "\\",
    "\\'; SELECT pg_sleep(10); --",
    "1; SELECT pg_sleep(10)",
    "E'\\x41'",
    "*/ DELETE FROM testapp_author /*",
]


@both_modes
def test_sql_looking_strings_round_trip_verbatim(seeded):
    before = seeded.counts()
    started = time.monotonic()
    for text in SQL_STRINGS:
        author = yield Author.vinyl.create(name=text)
        assert (yield Author.vinyl.get(pk=author.pk)).name == text
        assert (yield Author.vinyl.filter(name=text).count()) == 1
        assert (yield Author.vinyl.filter(name__contains=text).count()) >= 1
        assert (yield Author.vinyl.filter(name__startswith=text).count()) >= 1
        raw = yield run("default", "SELECT name FROM testapp_author WHERE name = %s", [text], MULTI)
        assert raw == [(text,)]
        yield Author.vinyl.filter(pk=author.pk).update(name=text + text)
        assert (yield Author.vinyl.get(pk=author.pk)).name == text + text
    assert time.monotonic() - started < 5  # no pg_sleep ran
    after = seeded.counts()
    assert after == {**before, "testapp_author": before["testapp_author"] + len(SQL_STRINGS)}
    assert seeded.value("SELECT to_regclass('testapp_book') IS NOT NULL")


# -- huge __in lists ---------------------------------------------------------------------------

HUGE_IN = 100_000


@both_modes
def test_huge_in_lists(seeded):
    before = seeded.counts()
    pks = list(range(1, HUGE_IN + 1))
    assert (yield Author.vinyl.filter(pk__in=pks).count()) == 1
    names = [f"name {i}" for i in range(HUGE_IN)] + ["Ann"]
    assert (yield Author.vinyl.filter(name__in=names).update(born=dt.date(2000, 1, 1))) == 1
    assert seeded.counts() == before


# -- the wrong mode ----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_awaiting_a_queryset_in_sync_mode(seeded):
    with sync_mode(), pytest.raises(TypeError, match="awaited in sync mode"):
        await Author.vinyl.all()


@pytest.mark.anyio
async def test_implicit_queries_in_async_mode(seeded):
    before = seeded.counts()
    qs = Author.vinyl.all()
    for use in (list, len, bool, lambda q: q[0], lambda q: [a for a in q]):
        with pytest.raises(ImplicitQueryError, match="await qs"):
            use(qs)
    book = await Book.vinyl.get(title="T")
    with pytest.raises(ImplicitQueryError):
        book.author  # noqa: B018
    assert seeded.counts() == before


@pytest.mark.anyio
async def test_sync_atomic_in_async_mode_and_the_reverse(seeded):
    with pytest.raises(TypeError, match="async with atomic"):
        with atomic():
            pass
    with sync_mode(), pytest.raises(TypeError, match="use `with atomic"):
        async with atomic():
            pass


def test_an_awaitable_reaching_sync_mode(seeded):
    before = seeded.counts()

    @maybe_async
    def universal():
        yield Author.vinyl.create(name="first")
        yield asyncio.sleep(0)  # async-only code inside universal code

    with sync_mode(), pytest.raises(AwaitableInSyncModeError, match="sync mode"):
        universal()
    # The write before it ran (sync mode runs eagerly); nothing else did.
    assert seeded.counts()["testapp_author"] == before["testapp_author"] + 1


def test_sync_code_calling_an_async_mode_operation(seeded):
    """An async-mode operation called from sync code returns an awaitable; driving it with
    sync-mode code raises instead of dropping it."""
    from vinyl import async_mode, then

    with async_mode():
        pending = Author.vinyl.count()
    with sync_mode(), pytest.raises(AwaitableInSyncModeError):
        then(pending, lambda n: n)
