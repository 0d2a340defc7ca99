"""The read API of VinylQuerySet beyond plain results: caches, errors, raw(), concurrency."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import FieldDoesNotExist, FieldError, ObjectDoesNotExist
from django.db import ProgrammingError
from django.db.models import Count, Sum
from django.db.models.functions import TruncDay
from django.db.models.query import QuerySet
from django.utils import timezone

from tests.scenarios.differential import django_manager, norm, seeded_database, vinyl_manager
from tests.testapp.models import (
    Article,
    ArticleQuerySet,
    Author,
    AuthorProxy,
    Book,
    Place,
    Restaurant,
    Tag,
)
from vinyl import VinylQuerySet, atomic, gather, maybe_async
from vinyl.connection import capture_queries
from vinyl.model.raw import VinylRawQuerySet
from vinyl.testing import both_modes


@pytest.fixture(scope="module")
def seeded(django_db_setup):
    """The tests of this module only read: seed once."""
    yield from seeded_database()


@both_modes
def test_terminals_read_the_result_cache(seeded, vinyl_mode):
    qs = Book.vinyl.order_by("pk")
    with capture_queries() as queries:
        books = yield qs
    assert len(queries) == 1
    with capture_queries() as queries:
        assert (yield qs.count()) == 6
        assert (yield qs.exists()) is True
        assert (yield qs.first()) is books[0]
        assert (yield qs.contains(books[2])) is True
        # Once evaluated, Django's implicit evaluation works in both modes.
        assert len(qs) == 6 and bool(qs)
        assert list(qs) == books and qs[1] is books[1] and qs[1:3] == books[1:3]
    assert queries == []
    # Chaining makes a new queryset, evaluated again.
    with capture_queries() as queries:
        assert (yield qs.filter(pages__gt=300).count()) == 2
    assert len(queries) == 1


@both_modes
def test_empty_cache_is_a_cache(seeded):
    qs = Book.vinyl.filter(pk=999).order_by("pk")  # first() of an unordered one re-queries
    assert (yield qs) == []
    with capture_queries() as queries:
        assert (yield qs.count()) == 0
        assert (yield qs.exists()) is False
        assert (yield qs.first()) is None
    assert queries == []


@both_modes
def test_get_errors_are_catchable_in_both_modes(seeded):
    try:
        yield Book.vinyl.get(pk=999)
    except Book.DoesNotExist as exc:
        assert str(exc) == "Book matching query does not exist."
    else:
        pytest.fail("DoesNotExist not raised")
    with pytest.raises(ObjectDoesNotExist):
        yield Author.vinyl.get(name="Nobody")
    with pytest.raises(Book.MultipleObjectsReturned, match="it returned 2!"):
        yield Book.vinyl.get(title="Zen")
    with pytest.raises(Book.DoesNotExist):
        yield Book.vinyl.filter(pk=999).latest("pages")
    # Errors Django raises before any query stay the same.
    with pytest.raises(FieldError):
        yield Book.vinyl.get(nonexistent=1)
    with pytest.raises(ValueError, match="get_latest_by"):
        yield Author.vinyl.latest()
    with pytest.raises(ValueError, match="in_bulk"):
        yield Book.vinyl.in_bulk(["Zen"], field_name="title")
    with pytest.raises(TypeError):
        yield Book.vinyl.aggregate(Count("pk"), "pages")
    # A database error surfaces as Django's exception class.
    with pytest.raises(ProgrammingError):
        yield Book.vinyl.raw("SELECT * FROM no_such_table")
    # The connection is usable afterwards (autocommit, or Django's own connection).
    assert (yield Book.vinyl.count()) == 6


@both_modes
def test_terminals_run_concurrently_in_async_mode(seeded, vinyl_mode):
    count, first, total, exists, bulk = yield gather(
        Book.vinyl.count(),
        Book.vinyl.order_by("title").first(),
        Book.vinyl.aggregate(total=Sum("pages")),
        Author.vinyl.filter(books__isnull=True).exists(),
        Tag.vinyl.in_bulk(["sql"], field_name="name"),
    )
    assert (count, first.title, total, exists) == (6, "Async Django", {"total": 1162}, False)
    assert list(bulk) == ["sql"] and bulk["sql"].pk == 3


@both_modes
def test_raw(seeded, vinyl_mode):
    qs = Book.vinyl.raw("SELECT id, title, pages * 2 AS double FROM testapp_book ORDER BY id")
    assert isinstance(qs, VinylRawQuerySet)
    with capture_queries() as queries:
        books = yield qs
        again = yield qs
    assert len(queries) == 1 and again is books
    assert isinstance(books, list) and len(books) == 6
    assert (books[0].title, books[0].double) == ("Async Django", 640)
    assert books[0].get_deferred_fields() == {
        "author_id",
        "editor_id",
        "pages",
        "price",
        "published",
    }
    assert list(qs) == books  # evaluated: Django's sync access works in both modes

    other = Book.vinyl.raw("SELECT * FROM testapp_book WHERE id = %s", [2]).using("serializable")
    assert isinstance(other, VinylRawQuerySet) and other.db == "serializable"
    [book] = yield other
    assert book._state.db == "serializable" and book.title == "Postgres Deep Dive"

    with pytest.raises(FieldDoesNotExist, match="primary key"):
        yield Book.vinyl.raw("SELECT title FROM testapp_book")


@both_modes
def test_raw_prefetch_related(seeded):
    qs = Book.vinyl.raw("SELECT * FROM testapp_book ORDER BY id").prefetch_related("tags")
    books = yield qs
    with capture_queries() as queries:
        names = [sorted(t.name for t in b.tags.all()) for b in books]
    assert queries == []
    assert names[:4] == [["async", "django", "python"], ["sql"], ["python"], ["python", "sql"]]


@both_modes
def test_custom_manager_and_queryset_methods(seeded):
    qs = Article.vinyl.by_headline("H")
    assert isinstance(qs, ArticleQuerySet)
    assert [a.headline for a in (yield qs)] == ["Hello", "Howdy"]
    assert (yield Article.vinyl.published().count()) == 2
    assert (yield Article.vinyl.filter(author__isnull=True).published().first()).headline == "Howdy"
    assert isinstance(Article.vinyl.raw("SELECT * FROM testapp_article"), VinylRawQuerySet)
    # Model.objects stays Django's on every kind of VinylModel; Model.vinyl is vinyl's.
    for model in (Article, Author, AuthorProxy, Place, Restaurant):
        assert type(model.objects.all()) in (QuerySet, type(Article.objects.all()))
        assert not isinstance(model.objects.all(), VinylQuerySet)
        assert isinstance(model.vinyl.all(), VinylQuerySet)
    assert isinstance(Restaurant.vinyl.all()[:1], VinylQuerySet)
    assert [r.name for r in (yield Restaurant.vinyl.order_by("pk"))] == ["Luigi", "Wok"]
    assert (yield AuthorProxy.vinyl.get(name="Bob")).shout() == "BOB"


@pytest.fixture
def expected_in_new_york(seeded):
    with timezone.override("America/New_York"):
        qs = django_manager(Book)
        return norm(
            (
                list(qs.dates("published", "day")),
                list(qs.filter(published__date=dt.date(2019, 12, 31)).values_list("pk", flat=True)),
                list(qs.annotate(day=TruncDay("published")).values_list("day", flat=True)),
            )
        )


@both_modes
def test_current_time_zone_is_honoured(expected_in_new_york):
    qs = vinyl_manager(Book)
    with timezone.override("America/New_York"):
        result = (
            (yield qs.dates("published", "day")),
            (yield qs.filter(published__date=dt.date(2019, 12, 31)).values_list("pk", flat=True)),
            (yield qs.annotate(day=TruncDay("published")).values_list("day", flat=True)),
        )
    assert norm(result) == expected_in_new_york
    assert result[1] == [4]  # 23:30 UTC is still Dec 31 in New York (and Jan 1 in Amsterdam)


@both_modes
def test_explain(seeded):
    plan = yield Book.vinyl.filter(pages__gt=100).explain()
    assert isinstance(plan, str) and "testapp_book" in plan
    plan = yield Book.vinyl.explain(format="json", analyze=True)
    assert plan.startswith("[")


@both_modes
def test_repr(seeded, vinyl_mode):
    qs = Book.vinyl.filter(title="Zen").order_by("pk")
    if vinyl_mode == "async":
        assert repr(qs) == "<VinylQuerySet of Book: not evaluated, await it>"
    yield qs
    assert repr(qs) == "<VinylQuerySet [<Book: Book object (5)>, <Book: Book object (6)>]>"


@both_modes
def test_every_statement_runs_through_vinyl(seeded):
    """Queries Django builds inside count()/aggregate() (AggregateQuery) are vinyl's too."""
    with capture_queries() as queries:
        yield Book.vinyl.count()
        yield Book.vinyl.filter(tags__name="python").distinct().count()
        yield Book.vinyl.aggregate(Sum("pages"))
        yield Book.vinyl.order_by("-pages")[:3].aggregate(total=Sum("pages"))
        yield Author.vinyl.annotate(n=Count("books")).aggregate(Sum("n"))
        yield Book.vinyl.in_bulk([1])
        yield Book.vinyl.explain()
        yield Book.vinyl.contains(Book(pk=1))
    assert len(queries) == 8
    assert [sql.split()[0] for sql, _ in queries].count("EXPLAIN") == 1
    assert sum("FROM (SELECT" in sql for sql, _ in queries) == 3


class Rollback(Exception):
    pass


@both_modes
def test_reads_inside_a_transaction_see_its_writes(seeded):
    @atomic
    @maybe_async
    def work():
        [new] = yield Book.vinyl.raw(
            "INSERT INTO testapp_book (author_id, title, pages, price)"
            " VALUES (2, 'Uncommitted', 7, 0) RETURNING *"
        )
        assert (yield Book.vinyl.count()) == 7
        assert (yield Book.vinyl.get(title="Uncommitted")).pk == new.pk
        assert (yield Book.vinyl.filter(author__name="Bob").aggregate(n=Count("pk"))) == {"n": 2}
        assert list((yield Book.vinyl.in_bulk([new.pk]))) == [new.pk]
        assert (yield Book.vinyl.order_by("pages").first()).pk == new.pk
        raise Rollback

    with pytest.raises(Rollback):
        yield work()
    assert (yield Book.vinyl.count()) == 6
    assert not (yield Book.vinyl.filter(title="Uncommitted").exists())
