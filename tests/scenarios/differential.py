"""Helpers for differential tests: seed data, and a strict normal form of query results.

A differential test builds the same queryset twice, once on ``Model.objects`` (Django, evaluated
in a sync fixture) and once on ``Model.vinyl`` (evaluated in the test's mode), and compares the
normal forms of both results: rows, order, Python types and values (``repr``), instance state,
annotations and select_related caches included.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from django.db import connections, models
from django.db.backends.postgresql.psycopg_any import DateTimeTZRange, NumericRange
from django.db.models.query import QuerySet

from tests.helpers import reset_tables
from tests.testapp.models import (
    AllFields,
    Article,
    Author,
    Book,
    Chapter,
    Membership,
    Place,
    Profile,
    Restaurant,
    Tag,
)

UTC = dt.UTC


def django_manager(model: type[models.Model]) -> Any:
    return model.objects


def vinyl_manager(model: type[models.Model]) -> Any:
    return model.vinyl


def seeded_database() -> Iterator[None]:
    """Body of a module-scoped fixture: empty the test tables, seed once, for read-only tests."""
    reset_tables()
    seed()
    yield
    connections.close_all()  # every alias: the test database is dropped at exit


def seed() -> None:
    """Create a small, varied data set with Django's own ORM (deterministic pks)."""
    ann = Author.objects.create(name="Ann", born=dt.date(1970, 1, 1))
    bob = Author.objects.create(name="Bob", born=None)
    cat = Author.objects.create(name="Cat", born=dt.date(1985, 6, 15))
    dan = Author.objects.create(name="Dan", born=dt.date(1970, 1, 1))
    Profile.objects.create(author=ann, bio="Writes about databases.")
    Profile.objects.create(author=cat, bio="")
    python, django, sql, aio = (
        Tag.objects.create(name=name) for name in ("python", "django", "sql", "async")
    )
    books = [
        # (title, author, editor, pages, price, published)
        ("Async Django", ann, bob, 320, "39.90", dt.datetime(2021, 3, 28, 1, 30, tzinfo=UTC)),
        (
            "Postgres Deep Dive",
            ann,
            None,
            500,
            "59.00",
            dt.datetime(2021, 10, 31, 0, 45, tzinfo=UTC),
        ),
        ("Python Tricks", bob, cat, 150, "19.99", None),
        ("SQL Basics", cat, ann, 90, "9.50", dt.datetime(2019, 12, 31, 23, 30, tzinfo=UTC)),
        ("Zen", cat, None, 90, "9.50", dt.datetime(2020, 6, 1, 12, 0, tzinfo=UTC)),
        ("Zen", dan, dan, 12, "1.00", dt.datetime(2020, 6, 1, 12, 0, 0, 500, tzinfo=UTC)),
    ]
    created = []
    for title, author, editor, pages, price, published in books:
        created.append(
            Book.objects.create(
                title=title,
                author=author,
                editor=editor,
                pages=pages,
                price=Decimal(price),
                published=published,
            )
        )
    b1, b2, b3, b4, b5, b6 = created
    b1.tags.set([python, django, aio])
    b2.tags.set([sql])
    b3.tags.set([python])
    b4.tags.set([sql, python])
    for book, count in ((b1, 3), (b2, 2), (b4, 1)):
        for n in range(1, count + 1):
            Chapter.objects.create(book=book, number=n, title=f"{book.title} #{n}")
    Membership.objects.create(tag=python, book=b1, role="main")
    Membership.objects.create(tag=sql, book=b1)
    Membership.objects.create(tag=sql, book=b4, role="side")
    Place.objects.create(name="Square", city="Amsterdam")
    Restaurant.objects.create(name="Luigi", city="Amsterdam", serves_pizza=True, rating=4)
    Restaurant.objects.create(name="Wok", city="Utrecht", serves_pizza=False, rating=None)
    Article.objects.create(headline="Hello", is_published=True, author=ann)
    Article.objects.create(headline="Hidden", is_published=False, author=ann)
    Article.objects.create(headline="Howdy", is_published=True, author=None)
    AllFields.objects.create(
        big=2**40,
        small=-7,
        positive=7,
        positive_big=2**50,
        positive_small=3,
        floating=0.1,
        decimal=Decimal("12.3400"),
        flag=True,
        char="héllo",
        text="line one\nline two",
        slug="a-slug",
        email="ann@example.com",
        url="https://example.com/x?y=1",
        ip="2001:db8::1",
        uuid=uuid.UUID("12345678-1234-5678-1234-567812345678"),
        day=dt.date(2024, 2, 29),
        clock=dt.time(23, 59, 59, 123456),
        moment=dt.datetime(2024, 3, 31, 0, 59, 59, tzinfo=UTC),
        duration=dt.timedelta(days=2, hours=3, microseconds=5),
        blob=b"\x00\x01binary\xff",
        data={"key": "value", "n": [1, 2, {"deep": None}], "f": 1.5, "t": True},
        numbers=[3, 1, 2],
        words=["a", "b"],
        int_range=NumericRange(1, 10),
        moment_range=DateTimeTZRange(
            dt.datetime(2024, 1, 1, tzinfo=UTC), dt.datetime(2024, 1, 2, tzinfo=UTC)
        ),
        decimal_range=NumericRange(Decimal("0.5"), Decimal("2.5"), "[]"),
    )
    AllFields.objects.create(
        big=-(2**40),
        floating=-2.5e10,
        decimal=Decimal("-0.0001"),
        flag=False,
        ip="10.0.0.1",
        data=["list", 1],
        numbers=[],
        int_range=NumericRange(None, 5),
    )
    AllFields.objects.create(data=None, flag=None)


def norm(value: Any, _path: tuple[int, ...] = ()) -> Any:
    """Return a structure equal for equal results and different for any difference in type."""
    if isinstance(value, models.Model):
        if id(value) in _path:  # a back reference (one-to-one caches point both ways)
            return ("cycle", type(value).__qualname__, value.pk)
        path = (*_path, id(value))
        state = value.__dict__
        return (
            "model",
            type(value).__qualname__,
            value._state.db,
            value._state.adding,
            sorted(value.get_deferred_fields()),
            [(k, norm(v, path)) for k, v in state.items() if k != "_state"],
            [(k, norm(v, path)) for k, v in sorted(value._state.fields_cache.items())],
        )
    if isinstance(value, QuerySet):  # a prefetch cache: compare its rows, never query
        return ("queryset", type(value).__qualname__, norm(value._result_cache, _path))
    if isinstance(value, dict):
        return (
            "dict",
            type(value).__qualname__,
            [(norm(k), norm(v, _path)) for k, v in value.items()],
        )
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return ("namedtuple", value._fields, [norm(v, _path) for v in value])
    if isinstance(value, (list, tuple)):
        return (type(value).__qualname__, [norm(v, _path) for v in value])
    if isinstance(value, memoryview):
        return ("memoryview", bytes(value))
    if isinstance(value, BaseException):
        return ("raises", type(value).__qualname__, str(value))
    return (type(value).__qualname__, repr(value))
