"""Query counts in tests: vinyl.testing's drop-ins count vinyl's statements in both modes."""

import pytest
from django.core.exceptions import SynchronousOnlyOperation
from django.db import connection
from django.test import SimpleTestCase, TransactionTestCase, utils

from tests.testapp.models import Author, Book
from vinyl.testing import AssertNumQueriesMixin, CaptureQueriesContext, both_modes


@pytest.fixture
def ann(db):
    return Author.objects.create(name="Ann")


@both_modes
def test_capture_queries_context_counts_in_both_modes(ann):
    with CaptureQueriesContext(connection) as captured:
        yield Author.vinyl.filter(name="Ann").count()
        yield Book.vinyl.create(author=ann, title="T")
    assert len(captured) == 2
    assert captured[0]["sql"].endswith('WHERE "testapp_author"."name" = \'Ann\'')
    assert captured[1]["sql"].startswith('INSERT INTO "testapp_book"')
    assert not connection.force_debug_cursor  # restored


@pytest.mark.anyio
async def test_djangos_own_capture_refuses_async_tests(ann):
    # Why vinyl ships the drop-in: Django's calls ensure_connection() on entry.
    with pytest.raises(SynchronousOnlyOperation):
        with utils.CaptureQueriesContext(connection):
            pass


@both_modes
def test_assert_num_queries_fixture(ann, vinyl_assert_num_queries):
    with vinyl_assert_num_queries(2):
        yield Author.vinyl.count()
        yield Author.vinyl.filter(name="Ann").exists()
    with pytest.raises(pytest.fail.Exception) as failed:
        with vinyl_assert_num_queries(1, info="one only"):
            yield Author.vinyl.count()
            yield Author.vinyl.count()
    assert str(failed.value) == (
        "Expected to perform 1 queries but 2 were done\none only (add -v option to show queries)"
    )


@both_modes
def test_assert_max_num_queries_fixture(ann, vinyl_assert_max_num_queries):
    with vinyl_assert_max_num_queries(3, using="default"):
        yield Author.vinyl.count()
    with pytest.raises(
        pytest.fail.Exception, match="Expected to perform 0 queries or less but 1 was done"
    ):
        with vinyl_assert_max_num_queries(0):
            yield Author.vinyl.count()


class NumQueries(AssertNumQueriesMixin, SimpleTestCase):
    databases = {"default"}

    async def test_async_method(self):
        with self.assertNumQueries(2):
            await Author.vinyl.count()
            await Author.vinyl.filter(name="Ann").exists()
        with self.assertRaises(AssertionError) as failed:
            with self.assertNumQueries(1):
                await Author.vinyl.count()
                await Author.vinyl.filter(name="Bob").exists()
        message = str(failed.exception).splitlines()
        assert message[:3] == [
            "2 != 1 : 2 queries executed, 1 expected",
            "Captured queries were:",
            '1. SELECT COUNT(*) AS "__count" FROM "testapp_author"',
        ]
        assert message[3].startswith('2. SELECT 1 AS "a" FROM "testapp_author" WHERE')

    def test_sync_method_same_message_as_djangos(self):
        messages = []
        for context in (self.assertNumQueries(0), TransactionTestCase.assertNumQueries(self, 0)):
            with self.assertRaises(AssertionError) as failed:
                with context:
                    Author.vinyl.count()
            messages.append(str(failed.exception))
        assert messages[0] == messages[1]
        self.assertNumQueries(1, Author.vinyl.count)
