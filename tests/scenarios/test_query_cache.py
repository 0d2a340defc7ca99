"""The structural query cache (vinyl.compiler.querycache) never changes an answer.

Each shape below is called with many values, among them values that change the SQL (None, empty
and de-duplicated ``__in`` lists, expressions, int vs str vs Decimal, date vs datetime, naive
datetimes, LIKE escapes, slices, ranges); every call, cold and then warm, in both modes, must
give Django's own answer (``Model.objects``) and Django's warnings. Shapes the cache covers must
also be served from it (hits), and the counters, the switch and the invalidation are checked.
"""

from __future__ import annotations

import datetime as dt
import warnings
from decimal import Decimal
from enum import StrEnum

import pytest
from django.apps import apps
from django.db import models, transaction
from django.db.models import Avg, Count, F, Max, Prefetch, Q, Sum, Value
from django.db.models.fields.related_descriptors import (
    ManyToManyDescriptor,
    create_forward_many_to_many_manager,
    create_reverse_many_to_one_manager,
)
from django.db.models.query import QuerySet
from django.db.models.signals import post_migrate
from django.test.utils import override_settings
from django.utils.translation import gettext_lazy

import vinyl
from tests.scenarios.differential import django_manager, norm, seeded_database, vinyl_manager
from tests.testapp.models import AllFields, Article, Author, Book, Chapter, Tag
from vinyl import clear_query_cache, maybe_async, query_cache_disabled, query_cache_info
from vinyl.connection import capture_queries
from vinyl.testing import both_modes

UTC = dt.UTC
NAIVE = dt.datetime(2020, 6, 1, 12, 0)


def books(M, **filters):
    return M(Book).filter(**filters).order_by("pk")


def django_related(instance, name):
    """*instance*'s related manager *name* of Django's own classes (a VinylModel's default
    manager, and so its related managers, make vinyl's querysets)."""
    descriptor = type(instance).__dict__[name]
    if isinstance(descriptor, ManyToManyDescriptor):
        manager = create_forward_many_to_many_manager(
            models.Manager, descriptor.rel, reverse=descriptor.reverse
        )
    else:
        manager = create_reverse_many_to_one_manager(models.Manager, descriptor.rel)
    return manager(instance)


def related_manager(M, instance, name):
    if M is django_manager:
        return django_related(instance, name)
    return getattr(instance.q, name)


def related_books(M, author):
    return related_manager(M, author, "books").order_by("pk")


@vinyl.atomic
@maybe_async
def _in_transaction(qs):
    return list((yield qs))


@maybe_async
def _prefetched_vinyl(qs, attr):
    return _prefetched((yield qs), attr)


def _prefetched(objs, attr):
    def related(obj):
        found = getattr(obj, attr)
        return found if isinstance(found, list) else found.all()

    return [(obj.pk, [o.pk for o in related(obj)]) for obj in objs]


def prefetched(M, name, pages, to_attr):
    """Authors with a Prefetch of their books (pages > *pages*), after and before a filter."""
    books = Prefetch("books", M(Book).filter(pages__gt=pages).order_by("-pk"), to_attr=to_attr)
    qs = M(Author).prefetch_related(books).filter(name__gte=name).order_by("pk")
    attr = to_attr or "books"
    if M is django_manager:
        return _prefetched(list(qs), attr)
    return _prefetched_vinyl(qs, attr)


def related(M, qs, *attrs):
    """*qs* evaluated with its prefetched relations: ``[(pk, [related pks] …), …]``."""
    if M is django_manager:
        return _related(list(qs), attrs)
    return _related_vinyl(qs, attrs)


@maybe_async
def _related_vinyl(qs, attrs):
    return _related((yield qs), attrs)


def _related(objs, attrs):
    def pks(obj, attr):
        found = obj
        for part in attr.split("."):
            found = getattr(found, part)
        return [o.pk for o in (found if isinstance(found, list) else found.all())]

    return [(obj.pk, *(pks(obj, attr) for attr in attrs)) for obj in objs]


BOOK_ROWS = ("pk", "title", "pages", "price", "published", "author_id", "editor_id")


def updated(M, filters, values):
    """``filter(**filters).update(**values)`` in a transaction rolled back: (rows, the books)."""
    if M is django_manager:
        with transaction.atomic():
            try:
                n = Book.objects.filter(**filters).update(**values)
                return n, list(Book.objects.order_by("pk").values_list(*BOOK_ROWS))
            finally:
                transaction.set_rollback(True)
    return _updated(filters, values)


@vinyl.atomic
@maybe_async
def _updated(filters, values):
    try:
        n = yield Book.vinyl.filter(**filters).update(**values)
        return n, list((yield Book.vinyl.order_by("pk").values_list(*BOOK_ROWS)))
    finally:
        vinyl.set_rollback(True)


def saved(M, pk, values):
    """A book saved (``save()``) with *values* set, rolled back: the books afterwards."""
    if M is django_manager:
        with transaction.atomic():
            try:
                book = Book.objects.get(pk=pk)
                for name, value in values.items():
                    setattr(book, name, value)
                models.Model.save(book)  # Django's own (VinylModel.save is vinyl's)
                return list(Book.objects.order_by("pk").values_list(*BOOK_ROWS))
            finally:
                transaction.set_rollback(True)
    return _saved(pk, values)


@vinyl.atomic
@maybe_async
def _saved(pk, values):
    try:
        book = yield Book.vinyl.get(pk=pk)
        for name, value in values.items():
            setattr(book, name, value)
        yield book.save()
        return list((yield Book.vinyl.order_by("pk").values_list(*BOOK_ROWS)))
    finally:
        vinyl.set_rollback(True)


# The related models of the lookups below: Django's side prefetches with querysets of Django's
# own managers (Model.objects), so that its answer comes from Django's own prefetchers (a
# VinylModel's accessors prefetch through vinyl's, see vinyl.model.prefetch).
_PREFETCHED = {
    "tags": Tag,
    "chapters": Chapter,
    "books": Book,
    "books__tags": Tag,
    "books__chapters": Chapter,
}


def lookups(M, *names):
    if M is django_manager:
        return [Prefetch(name, _PREFETCHED[name].objects.all()) for name in names]
    return list(names)


def nested(M, qs):
    """Authors, their books, and the books' tags and chapters, as pks."""
    if M is django_manager:
        return _nested(list(qs))
    return _nested_vinyl(qs)


@maybe_async
def _nested_vinyl(qs):
    return _nested((yield qs))


def _nested(authors):
    return [
        (
            a.pk,
            [
                (b.pk, [t.pk for t in b.tags.all()], [c.pk for c in b.chapters.all()])
                for b in a.books.all()
            ],
        )
        for a in authors
    ]


def locked(M, options, pks):
    """``select_for_update(**options)`` of the books *pks*, evaluated in a transaction."""
    qs = M(Book).select_for_update(**options).filter(pk__in=pks).order_by("pk")
    if M is django_manager:
        with transaction.atomic():
            return list(qs)
    return _in_transaction(qs)


# name -> (build(M, value), values, served from the cache when warm)
SHAPES = {
    "get_pk": (lambda M, v: M(Book).get(pk=v), [1, 2, "3", 999, "x", Decimal("4"), 5.0], True),
    "exact": (lambda M, v: books(M, title=v), ["Zen", "", None, "O'Neil", "%", "SQL Basics"], True),
    "iexact": (lambda M, v: books(M, title__iexact=v), ["zen", "ZEN", None, "a_b"], True),
    "in": (
        lambda M, v: books(M, pk__in=v),
        [[1, 2], [2, 2, 3], [], [None, 1], [1, 2, 3, 4], (1, 2), ["1", "2"], [3, 4], {1, 2}],
        True,
    ),
    "in_dict_set": (  # an __in lookup reads a dict's keys; sets and dicts keyed like lists
        lambda M, v: books(M, pk__in=v),
        [{1: 3, 2: 1}, {3: 1}, {4: 2, 5: 1}, {}, {2, 3}, frozenset({1, 6}), {5: 0, 6: 0}, {1, 2}],
        True,
    ),
    "in_dict_q": (
        lambda M, v: M(Book).filter(Q(pk__in=v) | Q(title="Zen")).order_by("pk"),
        [{1: 3, 2: 1}, {3: 1, 4: 1}, {5, 6}],
        True,
    ),
    "gt": (lambda M, v: books(M, pages__gt=v), [100, 90, "150", Decimal("89.5"), 12.5], True),
    "gte_lte": (lambda M, v: books(M, pages__gte=v, price__lte=v), [90, 12, 320, 0], True),
    "lt_price": (lambda M, v: books(M, price__lt=v), [Decimal("10"), 20, "9.50", 9.5], True),
    "range": (
        lambda M, v: books(M, pages__range=v),
        [(90, 320), [12, 12], (Decimal("90"), 500), (500, 90)],
        True,
    ),
    "isnull": (lambda M, v: books(M, editor__isnull=v), [True, False, True], True),
    "published_isnull": (lambda M, v: books(M, published__isnull=v), [False, True], True),
    "icontains": (
        lambda M, v: books(M, title__icontains=v),
        ["zen", "%", "_", "\\", "a%b", "", "SQL", "o"],
        True,
    ),
    "contains": (lambda M, v: books(M, title__contains=v), ["Z", "z", "%", "Deep"], True),
    "startswith": (lambda M, v: books(M, title__startswith=v), ["S", "Z", "_", "Py"], True),
    "iendswith": (lambda M, v: books(M, title__iendswith=v), ["EN", "s", "%"], True),
    "date": (
        lambda M, v: books(M, published__date=v),
        [dt.date(2019, 12, 31), dt.date(2020, 1, 1), dt.date(2020, 6, 1)],
        True,
    ),
    "year": (lambda M, v: books(M, published__year=v), [2020, 2021, "2019", 1999], True),
    "moment": (
        lambda M, v: books(M, published__gte=v),
        [
            dt.datetime(2020, 6, 1, 12, 0, tzinfo=UTC),
            NAIVE,  # Django warns (naive datetime), and so must vinyl
            dt.date(2021, 1, 1),
            dt.datetime(2021, 3, 28, 3, 30, tzinfo=dt.timezone(dt.timedelta(hours=2))),
            "2021-01-01 00:00",
        ],
        True,
    ),
    "json_key": (
        lambda M, v: M(AllFields).filter(data__key=v).order_by("pk").values_list("pk", flat=True),
        ["value", "other", None, 1],
        True,
    ),
    "json_contains": (
        lambda M, v: M(AllFields).filter(data__contains=v).order_by("pk").values_list("pk"),
        [{"key": "value"}, {"t": True}, {}, {"key": "nope"}],
        True,
    ),
    "q_or": (
        lambda M, v: M(Book).filter(Q(pages__gt=v) | Q(title__startswith="Z")).order_by("pk"),
        [300, 100, 1000],
        True,
    ),
    "q_not": (
        lambda M, v: M(Book).filter(~Q(pages=v), price__gt=1).order_by("-pk"),
        [90, 12],
        True,
    ),
    "exclude": (
        lambda M, v: M(Book).exclude(editor__name=v).order_by("pk"),
        ["Ann", None, "Dan"],
        True,
    ),
    "exclude_and": (
        lambda M, v: M(Book).exclude(pages__lt=v, title__icontains="s").order_by("pk"),
        [100, 1000, 0],
        True,
    ),
    "expression": (
        lambda M, v: books(M, pages__gt=v),
        [F("price"), Value(100), 100, F("pages") - 1],
        True,  # the plain value is cached; the expressions take Django's path
    ),
    "fk_instance": (
        lambda M, v: books(M, author=v),
        [Author(pk=1), Author(pk=3), 1, None, "2"],
        True,
    ),
    "values_list": (
        lambda M, v: books(M, author__name=v).values_list("title", "price"),
        ["Ann", "Cat", "Nobody"],
        True,
    ),
    "values_flat": (
        lambda M, v: books(M, pages__gte=v).values_list("title", flat=True),
        [90, 100],
        True,
    ),
    "values_named": (
        lambda M, v: books(M, pages__gte=v).values_list("title", "pages", named=True),
        [90, 300],
        True,
    ),
    "values": (lambda M, v: books(M, author_id=v).values("title", "author__name"), [1, 3], True),
    "select_related": (
        lambda M, v: books(M, author__name=v).select_related("author", "editor")[:2],
        ["Ann", "Cat", "Bob"],
        True,
    ),
    "only_defer": (
        lambda M, v: books(M, pages__gt=v).only("title").defer("title"),
        [10, 200],
        True,
    ),
    "distinct": (
        lambda M, v: M(Book).filter(tags__name__in=v).distinct().order_by("pk").values_list("pk"),
        [["python", "sql"], ["django", "x"], ["python", "python"]],
        True,
    ),
    "distinct_count": (  # an aggregate over a subquery: Django's path
        lambda M, v: M(Book).filter(tags__name__in=v).distinct().count(),
        [["python", "sql"], ["django", "x"]],
        False,
    ),
    "slices": (lambda M, v: M(Book).order_by("pk")[v : v + 2], [0, 1, 4, 10], True),
    "count": (lambda M, v: M(Book).filter(pages__gt=v).count(), [100, 0, 1000], True),
    "exists": (lambda M, v: M(Book).filter(title=v).exists(), ["Zen", "Nope"], True),
    "aggregate": (
        lambda M, v: (
            M(Book)
            .filter(pages__gte=v)
            .aggregate(Sum("pages"), latest=Max("published"), avg=Avg("price"), n=Count("pk"))
        ),
        [90, 1000, 12],
        True,
    ),
    "first_last": (
        lambda M, v: M(Book).filter(pages__gte=v).first(),
        [90, 400, 1000],
        True,
    ),
    "last": (lambda M, v: M(Book).filter(price__gt=v).last(), [1, 50], True),
    "earliest": (lambda M, v: M(Author).filter(name__gt=v).earliest("born"), ["A", "C"], True),
    "annotate": (
        lambda M, v: M(Book).annotate(n=Count("tags")).filter(pages__gt=v).order_by("pk"),
        [10, 200],
        True,
    ),
    "annotate_value": (
        lambda M, v: M(Book).annotate(x=Value(v)).filter(pk=2).values_list("x", flat=True),
        [1, "1", Decimal("1.0"), Decimal("1.00"), True],
        True,
    ),
    "related_manager": (lambda M, v: related_books(M, Author(pk=v)), [1, 3, 2], True),
    "related_filter": (
        lambda M, v: related_books(M, Author(pk=1)).filter(pages__gt=v).count(),
        [100, 400],
        True,
    ),
    "many_to_many": (  # a many-to-many related manager: its sticky filter recorded
        lambda M, v: related_manager(M, Book(pk=v), "tags").order_by("pk"),
        [1, 4, 2, 3],
        True,
    ),
    "many_to_many_sticky": (  # the next filter reuses the manager's join, as in Django
        lambda M, v: (
            related_manager(M, Tag(pk=v[0]), "books")
            .filter(tags__name=v[1])
            .order_by("pk")
            .values_list("pk", flat=True)
        ),
        [(1, "python"), (2, "python"), (1, "sql"), (2, "sql"), (3, "django"), (3, "x")],
        True,
    ),
    "prefetch": (  # the main query is cached; the prefetching queries take Django's path
        lambda M, v: M(Author).filter(name__gte=v).prefetch_related("books").order_by("pk"),
        ["A", "C"],
        True,
    ),
    "prefetch_twice": (
        lambda M, v: (
            M(Book)
            .prefetch_related("tags")
            .filter(pk__lte=v)
            .prefetch_related(None)
            .prefetch_related("author__books", "editor")
            .order_by("pk")
        ),
        [2, 4],
        True,
    ),
    "latest": (lambda M, v: M(Book).filter(pages__lt=v).latest("published"), [100, 1000], True),
    "custom_manager": (
        lambda M, v: M(Article).published().filter(headline__startswith=v).order_by("pk"),
        ["H", "Hi"],
        True,
    ),
    "using": (lambda M, v: M(Book).using("serializable").filter(pk=v), [1, 2], True),
    "prefetch_objects": (  # the main query is cached, the Prefetch objects are the call's own
        lambda M, v: prefetched(M, *v),
        [("A", 100, "big"), ("A", 300, "big"), ("C", 0, None), ("A", 100, None), ("B", 0, "x")],
        True,
    ),
    # The queries of prefetch_related (related managers' get_prefetch_querysets): keyed by the
    # number of instances and their types, the Prefetch queryset's own shape, served warm.
    "prefetch_m2m": (
        lambda M, v: related(
            M,
            M(Book).filter(pk__lte=v).prefetch_related(*lookups(M, "tags")).order_by("pk"),
            "tags",
        ),
        [2, 4, 2, 1, 6, 4, 0],
        True,
    ),
    "prefetch_m2m_reverse": (
        lambda M, v: related(
            M, M(Tag).filter(name__in=v).prefetch_related(*lookups(M, "books")), "books"
        ),
        [["python", "sql"], ["django"], ["sql", "python"], ["x"]],
        True,
    ),
    "prefetch_reverse_fk": (
        lambda M, v: related(
            M,
            M(Author).filter(name__lte=v).prefetch_related(*lookups(M, "books")).order_by("pk"),
            "books",
        ),
        ["Bob", "Dan", "Bob", "A"],
        True,
    ),
    "prefetch_nested": (
        lambda M, v: nested(
            M,
            M(Author)
            .filter(pk__gte=v)
            .order_by("pk")
            .prefetch_related(*lookups(M, "books", "books__tags", "books__chapters")),
        ),
        [1, 2, 1, 3],
        True,
    ),
    "prefetch_object_m2m": (
        lambda M, v: related(
            M,
            M(Book)
            .order_by("pk")
            .prefetch_related(Prefetch("tags", M(Tag).filter(name__gte=v[0]), to_attr=v[1])),
            v[1] or "tags",
        ),
        [("d", "some"), ("s", "some"), ("a", None), ("z", None), ("d", "some")],
        True,
    ),
    "prefetch_sliced": (  # a sliced Prefetch queryset (a window function): Django's path
        lambda M, v: related(
            M,
            M(Author)
            .order_by("pk")
            .prefetch_related(Prefetch("books", M(Book).order_by("-pages")[:v], to_attr="top")),
            "top",
        ),
        [1, 2, 1],
        True,  # (the main query is cached)
    ),
    "update": (  # update() of a filtered queryset: SET values bound as Django binds them
        lambda M, v: updated(M, *v),
        [
            ({"pk": 1}, {"pages": 10}),
            ({"pk": 2}, {"pages": 20}),
            ({"pk": 3}, {"pages": "30"}),
            ({"pk": 4}, {"pages": "x"}),  # Django's ValueError
            ({"pk": 1}, {"pages": None}),  # NOT NULL: IntegrityError
            ({"pk__in": [1, 2]}, {"title": "X", "price": Decimal("1.50")}),
            ({"pk__in": [3, 5]}, {"title": "%", "price": Decimal("2")}),
            ({"pk__in": [3, 5]}, {"title": "Y", "price": 2.5}),
            ({"pk": 4}, {"published": NAIVE}),  # Django warns (naive datetime)
            ({"pk": 5}, {"published": None}),
            ({"pk": 6}, {"published": None}),  # a template with NULL (5.2: in its SQL)
            ({"pk": 6}, {"published": dt.datetime(2001, 2, 3, 4, 5, tzinfo=UTC)}),
            ({"pk": 6}, {"published": dt.date(2001, 2, 3)}),
            ({"pages__gt": 100}, {"pages": 1}),
            ({"pages__gt": 300}, {"pages": 2}),
            ({"author__name": "Ann"}, {"pages": 5}),  # a join: Django's subquery, its path
            ({"author__name": "Cat"}, {"pages": 6}),
            ({"pk": 1}, {"pages": F("pages") + 1}),  # an expression: Django's path
            ({"pk": 1}, {"nope": 1}),  # Django's FieldError
            ({"pk": "x"}, {"pages": 1}),
            ({"title": None}, {"pages": 3}),
            ({"pk": 2}, {"author": Author(pk=3)}),  # a model instance: Django's path
            ({"pk": 2}, {"author_id": 3, "editor_id": None}),
            ({"pk": 3}, {"author_id": 1, "editor_id": 2}),
            ({"pk": 3}, {"title": gettext_lazy("lazy")}),  # a lazy string: Django's path
            ({"pk": 4}, {"title": StrEnum("E", {"A": "enum"}).A}),  # a str subclass
        ],
        True,
    ),
    "save": (  # a save()'s UPDATE (the instance's filter(pk=…)): keyed by the fields' kinds
        lambda M, v: saved(M, *v),
        [
            (1, {"pages": 11}),
            (2, {"pages": 12, "title": "T"}),
            (3, {"pages": 13}),
            (4, {"published": None}),
            (5, {"published": None}),
            (5, {"price": Decimal("9.99")}),
            (6, {"price": "x"}),  # Django's ValidationError
            (1, {"title": gettext_lazy("lazy")}),
        ],
        True,
    ),
    "select_for_update": (
        lambda M, v: locked(M, *v),
        [
            ({}, [1, 2]),
            ({}, [3, 4]),
            ({"nowait": True}, [1]),
            ({"skip_locked": True}, [2, 5]),
            ({"of": ("self",)}, [1, 3]),
            ({"no_key": True}, [4, 6]),
            ({"of": ("self",)}, [2, 4]),
            ({"nowait": True, "skip_locked": True}, [1]),  # Django's ValueError
            ({"of": ("nope",)}, [1, 2]),  # Django's FieldError when compiled
        ],
        True,
    ),
    "select_for_update_outside": (  # no transaction: Django's TransactionManagementError
        lambda M, v: M(Book).select_for_update().filter(pk=v),
        [1, 2],
        False,
    ),
    "select_for_update_get": (
        lambda M, v: locked(M, {}, [v]) if M is django_manager else _locked_get(v),
        [1, 2, 999],
        True,
    ),
}


@vinyl.atomic
@maybe_async
def _locked_get(pk):
    try:
        return [(yield Book.vinyl.select_for_update().get(pk=pk))]
    except Book.DoesNotExist:
        return []


@pytest.fixture(scope="module")
def seeded(django_db_setup):
    yield from seeded_database()


def _call(build, M, value, *, evaluate):
    """(normal form of the result or raised error, warning messages) of one call."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = evaluate(build(M, value))
        except Exception as exc:
            result = exc
    return norm(result), sorted(str(w.message) for w in caught)


def _django(value):
    return list(value) if isinstance(value, QuerySet) else value


@pytest.fixture
def expected(seeded, shape):
    build, values, _ = SHAPES[shape]
    return [_call(build, django_manager, v, evaluate=_django) for v in values]


@pytest.mark.parametrize("shape", list(SHAPES))
@both_modes
def test_every_call_equals_django(shape, expected):
    build, values, cacheable = SHAPES[shape]
    clear_query_cache()
    before = query_cache_info()["hits"]
    for when in ("cold", "warm"):
        for value, want in zip(values, expected, strict=True):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    result = yield build(vinyl_manager, value)
                except Exception as exc:
                    result = exc
            got = norm(result), sorted(str(w.message) for w in caught)
            assert got == want, (when, value)
    if query_cache_info()["enabled"] and cacheable is not None:
        assert (query_cache_info()["hits"] > before) == cacheable, query_cache_info()


@both_modes
def test_lazy_queryset_shows_its_own_values(seeded):
    """A queryset answered from a template still has its own query (built on demand)."""
    for pk in (1, 2, 3):
        qs = Book.vinyl.filter(pk=pk)
        rows = yield qs
        assert [b.pk for b in rows] == [pk]
        assert f"= {pk}" in str(qs.query)
        assert [b.pk for b in (yield qs.filter(pages__gt=0))] == [pk]


@both_modes
def test_a_query_changed_in_place_is_not_answered_from_a_template(seeded):
    """``qs.query.<method>()`` changes what the recorded shape says: that queryset falls back."""
    for _ in range(2):
        assert [b.pk for b in (yield Book.vinyl.filter(pages__gt=0).order_by("pk"))][0] == 1
    qs = Book.vinyl.filter(pages__gt=0).order_by("pk")
    qs.query.clear_ordering(force=True)
    qs.query.add_ordering("-pk")
    assert [b.pk for b in (yield qs)] == [6, 5, 4, 3, 2, 1]


@both_modes
def test_a_list_changed_after_filter_is_not_seen(seeded):
    """Django copies an ``__in`` list when filtering; so does a recorded queryset."""
    for _ in range(2):
        ids = [1, 2]
        qs = Book.vinyl.filter(pk__in=ids).order_by("pk")
        ids.append(3)
        assert [b.pk for b in (yield qs)] == [1, 2]


@both_modes
def test_a_dict_or_set_changed_after_filter_is_not_seen(seeded):
    for _ in range(2):  # the second time, the filter is lazy
        wanted, other = {1: 1, 2: 1}, {3, 4}
        qs = Book.vinyl.filter(pk__in=wanted).order_by("pk")
        qs2 = Book.vinyl.filter(Q(pk__in=other)).order_by("pk")
        wanted[3] = 1
        other.add(5)
        assert [b.pk for b in (yield qs)] == [1, 2]
        assert [b.pk for b in (yield qs2)] == [3, 4]


@both_modes
def test_counters_and_switch(seeded):
    clear_query_cache()
    for pk in (1, 2, 3):
        yield Book.vinyl.get(pk=pk)
    info = query_cache_info()
    if not info["enabled"]:
        pytest.skip("the cache is switched off for this run (VINYL_QUERY_CACHE=0)")
    assert (info["misses"], info["hits"], info["size"]) == (1, 2, 1)
    yield Book.vinyl.filter(pages__gt=F("price")).count()  # an expression value
    assert query_cache_info()["fallbacks"] == {"an expression value": 1}
    with query_cache_disabled():
        yield Book.vinyl.get(pk=1)
    assert query_cache_info()["hits"] == 2
    with override_settings(VINYL_QUERY_CACHE=False):
        yield Book.vinyl.get(pk=1)
        assert query_cache_info()["enabled"] is False
    assert query_cache_info()["hits"] == 2
    with override_settings(VINYL_QUERY_CACHE_SIZE=2):
        for field in ("title", "pages", "price"):
            for value in ("1", "2"):
                yield Book.vinyl.filter(**{field: value}).values_list("pk")
        assert query_cache_info()["size"] == 2  # least recently used first out


def test_schema_changes_and_aliases_do_not_share_entries(seeded):
    clear_query_cache()
    Book.vinyl.get(pk=1)
    Book.vinyl.using("serializable").get(pk=1)
    obj = Book.vinyl.using("serializable").get(pk=2)
    assert obj._state.db == "serializable"
    if not query_cache_info()["enabled"]:
        return
    assert query_cache_info()["size"] == 2  # one template per alias
    config = apps.get_app_config("testapp")
    post_migrate.send(sender=config, app_config=config, verbosity=0, interactive=False,
                      using="default", apps=apps, plan=[])  # fmt: skip
    assert query_cache_info()["size"] == 0  # a migration forgets every template


@both_modes
def test_a_query_changed_in_place_leaves_lazy_clones_alone(seeded):
    for _ in range(2):  # the second time, the filter below is lazy
        base = Book.vinyl.filter(pages__gt=100)
        base._vinyl_query()  # built (as vinyl's own trusted readers do), still recorded
        child = base.filter(pages__lt=400).order_by("pk")  # lazy on base's query
        base.query.clear_where()  # a hack on the parent, after the child was made
        clear_query_cache(counters=False)  # so the child is built from its base, not a template
        assert [b.pk for b in (yield child)] == [1, 3]


def test_threads_share_templates_never_values(seeded):
    """Sync mode in many threads: one template, each call with its own values."""
    import threading

    from django.db import connections

    errors = []

    def work(offset):
        try:
            for i in range(60):
                pk = (i + offset) % 6 + 1
                assert Book.vinyl.get(pk=pk).pk == pk
                assert list(Book.vinyl.filter(pk=pk).values_list("pk", flat=True)) == [pk]
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors


@both_modes
def test_concurrent_tasks_share_templates_never_values(seeded):
    from vinyl import gather

    pks = [i % 6 + 1 for i in range(40)]
    books = yield gather(*(Book.vinyl.get(pk=pk) for pk in pks))
    assert [b.pk for b in books] == pks


@both_modes
def test_a_select_for_update_template_still_locks(seeded):
    """A warm select_for_update() is served from its template, and its rows are locked."""
    from tests.helpers import Outside

    outside = Outside()
    try:
        clear_query_cache()
        for pks, options in (([1, 2], {}), ([3, 4], {}), ([5], {"nowait": True})):
            books, sql = yield _lock_and_probe(outside, pks, options)
            assert books == pks
            assert sql.endswith("FOR UPDATE" + (" NOWAIT" if options else ""))
        if query_cache_info()["enabled"]:
            assert query_cache_info()["hits"] == 1  # the second call; the NOWAIT one is a miss
    finally:
        for conn in outside.conns:
            conn.close()


@vinyl.atomic
@maybe_async
def _lock_and_probe(outside, pks, options):
    import psycopg

    with capture_queries() as queries:
        books = yield Book.vinyl.select_for_update(**options).filter(pk__in=pks).order_by("pk")
    for pk in pks:  # another session cannot lock them
        with pytest.raises(psycopg.errors.LockNotAvailable):
            outside.try_lock("testapp_book", "id", pk)
    [(sql, _)] = queries
    return [book.pk for book in books], sql


PREFETCHED_PKS = ([1, 2], [3, 4], [5, 2])


@pytest.fixture
def prefetched_books(seeded):
    """Django's answers (computed outside the test's event loop)."""
    return [
        _related(
            Book.objects.filter(pk__in=pks)
            .order_by("pk")
            .prefetch_related(*lookups(django_manager, "tags", "chapters")),
            ("tags", "chapters"),
        )
        for pks in PREFETCHED_PKS
    ]


@both_modes
def test_the_queries_of_a_prefetch_are_served_from_templates(prefetched_books):
    clear_query_cache()
    for pks, expected in zip(PREFETCHED_PKS, prefetched_books, strict=True):
        books = yield (
            Book.vinyl.filter(pk__in=pks).order_by("pk").prefetch_related("tags", "chapters")
        )
        assert _related(books, ("tags", "chapters")) == expected
        for book in books:
            assert all(chapter.book is book for chapter in book.chapters.all())  # no query
    info = query_cache_info()
    if info["enabled"]:
        # Three queries a call (the books, their tags, their chapters): misses the first time.
        assert (info["misses"], info["hits"], info["fallbacks"]) == (3, 6, {})


@vinyl.atomic
@maybe_async
def _updates_and_saves(books):
    """Three update()s and three save()s of one shape each, rolled back: the hit counts."""
    try:
        counts = []
        before = query_cache_info()["hits"]
        for book, pages in zip(books, (7, 8, 9), strict=True):
            assert (yield Book.vinyl.filter(pk=book.pk).update(pages=pages)) == 1
        counts.append(query_cache_info()["hits"] - before)
        before = query_cache_info()["hits"]
        for book, pages in zip(books, (17, 18, 19), strict=True):
            book.pages = pages
            yield book.save(update_fields=["pages"])
        counts.append(query_cache_info()["hits"] - before)
        rows = yield Book.vinyl.filter(pk__in=[b.pk for b in books]).order_by("pk")
        assert [b.pages for b in rows] == [17, 18, 19]
        return counts
    finally:
        vinyl.set_rollback(True)


@both_modes
def test_updates_of_filtered_querysets_and_saves_are_served_from_templates(seeded):
    clear_query_cache()
    books = yield Book.vinyl.filter(pk__in=[1, 2, 3]).order_by("pk")
    counts = yield _updates_and_saves(books)
    if query_cache_info()["enabled"]:
        assert counts == [2, 2]  # each shape's first statement is a miss
        assert query_cache_info()["fallbacks"] == {}
