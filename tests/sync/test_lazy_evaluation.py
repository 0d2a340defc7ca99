"""Sync mode keeps Django's lazy evaluation: no query until the queryset is used."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.scenarios.differential import seed
from tests.testapp.models import Book
from vinyl import is_async
from vinyl.connection import capture_queries


@pytest.fixture
def seeded(db):
    seed()


def test_implicit_evaluation(seeded):
    assert not is_async()
    with capture_queries() as queries, CaptureQueriesContext(connection) as django_queries:
        qs = Book.vinyl.filter(pages__gt=100).order_by("pk")
    assert queries == [] and len(django_queries) == 0
    with capture_queries() as queries:
        assert qs[0].title == "Async Django"  # an unevaluated queryset: one LIMIT 1 query
        assert len(qs) == 3  # evaluates (one query) and fills the cache
        assert bool(qs) and [b.pages for b in qs] == [320, 500, 150] and qs[2].pages == 150
    assert len(queries) == 2 and "LIMIT 1" in queries[0][0]
    with capture_queries() as queries:
        assert bool(Book.vinyl.filter(pk=999)) is False
        assert list(Book.vinyl.raw("SELECT * FROM testapp_book WHERE id < 3"))[1].pk == 2
    assert len(queries) == 2


def test_await_in_sync_mode_names_the_fix(seeded):
    qs = Book.vinyl.all()
    with pytest.raises(TypeError, match="in sync mode iterate it or call list"):
        qs.__await__()
    with pytest.raises(TypeError, match="iterate it or call list"):
        Book.vinyl.raw("SELECT * FROM testapp_book").__await__()


def test_lazy_chain_keeps_its_steps_under_a_related_managers_filter(db):
    # Django's related managers filter a manager's queryset with _defer_next_filter (and
    # _next_is_sticky() for many-to-many); a queryset whose recorded shape is known is built
    # only then, and its own steps must not be deferred (and lost) with that filter.
    from tests.testapp.models import Article, Author

    ann = Author.objects.create(name="Ann")
    Article.objects.create(author=ann, headline="published", is_published=True)
    Article.objects.create(author=ann, headline="draft")
    for sticky in (False, False, True, True):  # from the second call on, the shape is known
        qs = Article.vinyl.filter(is_published=True)
        qs._defer_next_filter = True
        if sticky:
            qs = qs._next_is_sticky()
        assert [a.headline for a in qs.filter(author=ann)] == ["published"]
