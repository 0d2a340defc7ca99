"""Async mode: an unevaluated queryset used where only a query could answer raises, naming the fix."""

from __future__ import annotations

import pytest
from django.db import connections

from tests.scenarios.differential import seed
from tests.testapp.models import Book
from vinyl import ImplicitQueryError, close_pools, is_async
from vinyl.connection import capture_queries

pytestmark = pytest.mark.anyio

IMPLICIT = {
    "len": len,
    "bool": bool,
    "list": list,
    "iter": iter,
    "for": lambda qs: [obj for obj in qs],
    "index": lambda qs: qs[0],
    "in": lambda qs: Book(pk=1) in qs,
    "step": lambda qs: qs[::2],  # Django evaluates a slice with a step at once
}


@pytest.fixture
def seeded(db):
    seed()
    yield
    connections.close_all()


@pytest.fixture
async def pools():
    yield
    await close_pools()


@pytest.mark.parametrize("op", list(IMPLICIT))
async def test_unevaluated_queryset(seeded, pools, op):
    assert is_async()
    qs = Book.vinyl.filter(pages__gt=100).order_by("pk")
    with capture_queries() as queries, pytest.raises(ImplicitQueryError) as info:
        IMPLICIT[op](qs)
    assert queries == []
    message = str(info.value)
    assert "Book queryset has not been evaluated" in message
    assert "await qs" in message and "async for obj in qs" in message
    # The fix works, and afterwards the same operation reads the cache.
    books = await qs
    with capture_queries() as queries:
        IMPLICIT[op](qs)
    assert queries == [] and len(books) == 3


@pytest.mark.parametrize("op", [*IMPLICIT, "columns"])
async def test_unevaluated_raw_queryset(seeded, pools, op):
    qs = Book.vinyl.raw("SELECT * FROM testapp_book ORDER BY id")
    with pytest.raises(ImplicitQueryError, match=r"`objs = await qs` or `async for obj in qs`"):
        qs.columns if op == "columns" else IMPLICIT[op](qs)
    books = await qs
    assert len(qs) == len(books) == 6 and qs[5] is books[5]


async def test_async_for(seeded, pools):
    titles = [t async for t in Book.vinyl.order_by("pk").values_list("title", flat=True)]
    assert titles[:2] == ["Async Django", "Postgres Deep Dive"]
    pks = [b.pk async for b in Book.vinyl.raw("SELECT id FROM testapp_book ORDER BY id DESC")]
    assert pks == [6, 5, 4, 3, 2, 1]


async def test_chaining_and_slicing_do_no_io(seeded, pools):
    with capture_queries() as queries:
        qs = Book.vinyl.filter(pages__gt=10).exclude(title="Zen").order_by("-pk")[1:3]
        qs = qs.values_list("pk", flat=True)
        assert "not evaluated" in repr(qs)
    assert queries == []
    assert await qs == [3, 2]


async def test_refusal_is_djangos_synchronous_only_operation(seeded, pools):
    # Code written against Django's querysets in async code catches SynchronousOnlyOperation
    # (Django's own tests do: async.tests.DatabaseConnectionTest.test_get_async_connection).
    from django.core.exceptions import SynchronousOnlyOperation

    from vinyl.relations import RelationNotLoaded

    with pytest.raises(SynchronousOnlyOperation, match="await qs"):
        list(Book.vinyl.all())
    book = await Book.vinyl.order_by("pk").first()
    with pytest.raises(SynchronousOnlyOperation) as info:
        _ = book.author
    assert isinstance(info.value, RelationNotLoaded)
