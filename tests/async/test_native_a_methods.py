"""Django's a-methods of the read API run natively on vinyl's async connections."""

from __future__ import annotations

import pytest
from django.db import connections
from django.db.models import Sum

from tests.scenarios.differential import seed
from tests.testapp.models import Book
from vinyl import atomic, close_pools, set_rollback, sync_mode
from vinyl.connection import capture_queries

pytestmark = pytest.mark.anyio


@pytest.fixture
def seeded(db):
    seed()
    yield
    connections.close_all()


async def test_a_methods(seeded):
    try:
        with capture_queries() as queries:
            assert (await Book.vinyl.aget(pk=2)).title == "Postgres Deep Dive"
            assert (await Book.vinyl.order_by("pages", "pk").afirst()).pk == 6
            assert (await Book.vinyl.order_by("pages", "pk").alast()).pk == 2
            assert (await Book.vinyl.aearliest("published")).pk == 4
            assert (await Book.vinyl.filter(published__isnull=False).alatest()).pk == 2
            assert await Book.vinyl.acount() == 6
            assert await Book.vinyl.filter(pk=1).aexists()
            assert await Book.vinyl.acontains(Book(pk=3))
            assert await Book.vinyl.aaggregate(s=Sum("pages")) == {"s": 1162}
            assert list(await Book.vinyl.ain_bulk([1, 2])) == [1, 2]
            assert "Seq Scan" in await Book.vinyl.aexplain()
            with pytest.raises(Book.DoesNotExist):
                await Book.vinyl.aget(pk=999)
            with sync_mode():  # the a-methods are async whatever the flag says
                assert await Book.vinyl.filter(pages__gt=300).acount() == 2
        # Each ran through vinyl (on the event loop), none through Django's worker thread.
        assert len(queries) == 13
    finally:
        await close_pools()


async def test_a_methods_are_part_of_an_async_block(seeded):
    try:
        async with atomic():
            [new] = await Book.vinyl.raw(
                "INSERT INTO testapp_book (author_id, title, pages, price)"
                " VALUES (1, 'In block', 0, 0) RETURNING *"
            )
            assert (await Book.vinyl.aget(title="In block")).pk == new.pk
            assert await Book.vinyl.acount() == 7
            set_rollback(True)
        assert await Book.vinyl.acount() == 6
    finally:
        await close_pools()
