"""The cursor a pooled connection keeps for its statements (vinyl.db.connection.AsyncHandle).

One psycopg cursor per connection serves statement after statement; it is not kept after a large
result (which it would hold while the connection idles) nor after an error.
"""

import pytest
from django.db import DataError

from tests.testapp.models import Author
from vinyl import atomic
from vinyl.db.connection import ALL_ROWS, run
from vinyl.db.pins import current_pin

pytestmark = pytest.mark.anyio


def kept_cursor():
    return getattr(current_pin("default").conn, "_vinyl_cursor", None)


async def test_one_cursor_serves_the_statements_of_a_connection(outside):
    async with atomic():
        assert await run("default", "SELECT 1", None) == [(1,)]
        cursor = kept_cursor()
        assert cursor is not None and not cursor.closed
        await Author.vinyl.create(name="Ann")
        assert await Author.vinyl.values_list("name", flat=True) == ["Ann"]
        assert await run("default", "SELECT %s::int + 1", [41]) == [(42,)]
        assert kept_cursor() is cursor


async def test_a_large_result_is_not_kept_by_the_idle_connection(outside):
    async with atomic():
        await run("default", "SELECT 1", None)
        cursor = kept_cursor()
        rows = await run("default", "SELECT generate_series(1, 1001)", None, ALL_ROWS)
        assert len(rows) == 1001
        assert kept_cursor() is None and cursor.closed
        assert await run("default", "SELECT 2", None) == [(2,)]  # a new cursor
        assert kept_cursor() not in (None, cursor)


async def test_a_failed_statement_leaves_a_new_cursor_for_the_next(outside):
    async with atomic():
        await run("default", "SELECT 1", None)
        cursor = kept_cursor()
        with pytest.raises(DataError):
            async with atomic():  # a savepoint: the transaction goes on
                await run("default", "SELECT 1 / 0", None)
        assert cursor.closed
        assert await run("default", "SELECT 3", None) == [(3,)]
        assert kept_cursor() is not cursor
