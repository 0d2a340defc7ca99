"""Async mode only: Django's sync write paths refuse to drop vinyl's awaitables."""

import pytest
from django.db.models import QuerySet

import vinyl
from tests.testapp.models import Author, Tag
from vinyl.compiler import SynchronousQueryError


@pytest.mark.anyio
async def test_django_sync_code_calling_save_in_async_mode_is_refused(db):
    try:
        with vinyl.async_mode():
            with pytest.raises(SynchronousQueryError, match="django.db.models.query"):
                QuerySet.create(Author.objects.all(), name="lost")  # Django's own create()
            assert await Author.vinyl.count() == 0
            tag = await Tag.vinyl.create(name="t")
            saved = tag.save()  # vinyl's own callers get the awaitable
            await saved
            deleted = await tag.delete()
            assert deleted == (1, {"testapp.Tag": 1})
    finally:
        await vinyl.close_pools()
