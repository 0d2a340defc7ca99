"""OPTIONS["server_side_binding"] with prepared statements, in both modes.

The test settings' alias ``prepared`` is the test database with ``server_side_binding: True`` and
``prepare_threshold: 0`` (every statement prepared at its first execution). vinyl must give
Django's answers there too: the same rows, the same errors (Django's known limitation, ticket
#34255, included), a stream on a server-binding named cursor, as Django uses.
"""

import datetime
from decimal import Decimal

import pytest
from django.db import ProgrammingError, connections
from django.db.models import Count, Max, Min, Sum, Value
from django.db.models.functions import Greatest, Least

import vinyl
from tests.helpers import collect
from tests.testapp.models import Author, Book
from vinyl.testing import both_modes

DB = "prepared"


@pytest.fixture
def data(db):
    ann = Author.objects.create(name="Ann")
    bob = Author.objects.create(name="Bob")
    start = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    for n in range(6):
        Book.objects.create(
            author=ann if n % 2 else bob,
            title=f"T{n}",
            pages=100 * n,
            price=Decimal(f"{n}.50"),
            published=start + datetime.timedelta(days=n),
        )
    yield ann, bob
    connections[DB].close()  # Django's connection of the alias (the db fixture closes default's)


@pytest.fixture
def expected(data):
    """Django's answers on the same alias."""
    qs = Book.objects.using(DB)
    return {
        "get": qs.get(title="T3"),
        "filter": list(qs.filter(pages__gte=200, title__in=["T2", "T3", "T9"]).order_by("pk")),
        "values": list(qs.order_by("-pages").values_list("title", "price", "published")),
        "join": [
            (b.title, b.author.name)
            for b in qs.select_related("author").filter(author__name="Ann").order_by("pk")
        ],
        "count": qs.filter(pages__lt=300).count(),
        "aggregate": qs.aggregate(total=Sum("price"), latest=Max("published")),
        "annotate": list(
            Author.objects.using(DB).annotate(n=Count("books")).order_by("name").values("name", "n")
        ),
    }


@both_modes
def test_reads_equal_djangos_with_server_side_binding_and_prepared_statements(expected, vinyl_mode):
    qs = Book.vinyl.using(DB)
    for _ in range(3):  # first execution prepares, the next ones run the prepared statement
        assert (yield qs.get(title="T3")) == expected["get"]
        assert (
            yield qs.filter(pages__gte=200, title__in=["T2", "T3", "T9"]).order_by("pk")
        ) == expected["filter"]
        values = yield qs.order_by("-pages").values_list("title", "price", "published")
        assert values == expected["values"]
        assert [v[2].tzinfo for v in values] == [v[2].tzinfo for v in expected["values"]]
        joined = yield qs.select_related("author").filter(author__name="Ann").order_by("pk")
        assert [(b.title, b.author.name) for b in joined] == expected["join"]
        assert (yield qs.filter(pages__lt=300).count()) == expected["count"]
        assert (yield qs.aggregate(total=Sum("price"), latest=Max("published"))) == expected[
            "aggregate"
        ]
        assert (
            yield Author.vinyl.using(DB)
            .annotate(n=Count("books"))
            .order_by("name")
            .values("name", "n")
        ) == expected["annotate"]
    # A stream on a named cursor with server-side binding (Django's class for this option).
    found = yield collect(qs.order_by("pk").iterator(chunk_size=2), vinyl_mode)
    assert [b.title for b in found] == [f"T{n}" for n in range(6)]


@both_modes
def test_writes_and_the_cursor_run_prepared(data):
    ann, _ = data
    book = yield Book.vinyl.using(DB).create(author_id=ann.pk, title="New", pages=7)
    assert (yield Book.vinyl.using(DB).filter(pk=book.pk).update(pages=8)) == 1
    assert (yield Book.vinyl.using(DB).get(pk=book.pk)).pages == 8
    cursor = yield vinyl.cursor(DB).open()
    try:
        yield cursor.execute("SELECT title FROM testapp_book WHERE pages = %s", [8])
        assert (yield cursor.fetchall()) == [("New",)]
        # The statements above were prepared on this session (prepare_threshold 0).
        yield cursor.execute("SELECT count(*) FROM pg_prepared_statements")
        (prepared,) = yield cursor.fetchone()
        assert prepared >= 1
    finally:
        yield cursor.close()
    deleted, _ = yield Book.vinyl.using(DB).filter(pk=book.pk).delete()
    assert deleted == 1


def limitation(manager):
    """Ticket #34255: a parameter in SELECT and GROUP BY is two parameters to the server."""
    return (
        manager.using(DB)
        .annotate(greatest_pages=Greatest("pages", Value(600)))
        .values("greatest_pages")
        .annotate(min_pages=Min("pages"), least=Least("min_pages", "greatest_pages"))
        .values_list("least", flat=True)
    )


@pytest.fixture
def django_error(data):
    with pytest.raises(ProgrammingError) as caught:
        list(limitation(Book.objects))
    return caught.value


@both_modes
def test_djangos_known_limitation_raises_djangos_error(django_error):
    with pytest.raises(ProgrammingError) as caught:
        yield limitation(Book.vinyl)
    assert type(caught.value) is type(django_error)
    assert "GROUP BY" in str(caught.value) and "GROUP BY" in str(django_error)
