"""Several databases: a SQLite alias ("legacy") next to the PostgreSQL ones, in both modes.

Async mode serves every PostgreSQL alias whatever else DATABASES holds, leaves the others alone,
and always gives Django's connections back (issue 11, item 1).
"""

import os
import subprocess
import sys
import textwrap

import pytest
from django.core.exceptions import FieldError, ImproperlyConfigured
from django.db import connections
from django.db.models import Count, Prefetch, Sum
from django.db.utils import ConnectionDoesNotExist

from tests.legacyapp.models import LegacyNote
from tests.testapp.models import Author, Book
from vinyl import atomic, maybe_async
from vinyl.testing import both_modes

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def books(db):
    ann = Author.objects.create(name="Ann")
    Book.objects.create(author=ann, title="A", pages=1)
    Book.objects.create(author=ann, title="B", pages=2)
    return ann


def django_connections():
    return {alias: connections[alias] for alias in connections}


@both_modes
def test_postgresql_alias_works_next_to_sqlite(books, vinyl_mode):
    before = django_connections()
    assert (yield Book.vinyl.count()) == 2
    assert (yield Book.vinyl.aggregate(total=Sum("pages"))) == {"total": 3}
    assert (yield Author.vinyl.annotate(n=Count("books")).values_list("n", flat=True)) == [2]
    authors = yield Author.vinyl.prefetch_related(Prefetch("books", Book.vinyl.order_by("pk")))
    assert [b.title for b in authors[0].books.all()] == ["A", "B"]
    by_pk = yield Book.vinyl.in_bulk()
    assert sorted(b.title for b in by_pk.values()) == ["A", "B"]
    assert (yield Book.vinyl.filter(title="A").delete())[0] == 1
    assert (yield Book.vinyl.using("serializable").count()) == 1
    assert django_connections() == before
    if vinyl_mode == "sync":
        connections["serializable"].close()  # opened here; the test database is dropped at exit


@both_modes
def test_writes_in_atomic_using_an_alias(books):
    before = django_connections()

    @maybe_async
    def body():
        yield Author.vinyl.create(name="Bob")
        yield Book.vinyl.filter(title="B").update(pages=5)
        yield Author.vinyl.filter(name="Ann").delete()  # cascades to the books

    yield atomic(using="default")(body)()  # `with` in sync mode, `async with` in async mode
    assert (yield Author.vinyl.values_list("name", flat=True)) == ["Bob"]
    assert (yield Book.vinyl.count()) == 0
    assert django_connections() == before


@both_modes
def test_connections_restored_when_a_replayed_function_raises(books):
    before = django_connections()
    with pytest.raises(FieldError):
        yield Book.vinyl.aggregate(total=Sum("no_such_field"))
    with pytest.raises(ValueError):
        yield Book.vinyl.in_bulk([1], field_name="title")  # not unique
    assert django_connections() == before
    assert (yield Book.vinyl.count()) == 2


@both_modes
def test_unknown_alias_is_djangos_error(books):
    with pytest.raises(ConnectionDoesNotExist):
        yield Book.vinyl.using("nope").count()
    with pytest.raises(ConnectionDoesNotExist):
        yield Book.vinyl.using("nope").get(pk=1)


@pytest.fixture
def legacy_note(books):
    LegacyNote.objects.create(text="kept")  # Django's own path on SQLite, routed
    yield
    assert LegacyNote.objects.using("legacy").count() == 1
    LegacyNote.objects.all().delete()


@both_modes
def test_a_sqlite_alias_is_left_alone(legacy_note, vinyl_mode):
    if vinyl_mode == "async":
        with pytest.raises(ImproperlyConfigured, match="needs a PostgreSQL database"):
            yield Book.vinyl.using("legacy").count()
    assert (yield Book.vinyl.count()) == 2


SCRIPT = textwrap.dedent(
    """
    import asyncio, os, sys
    sys.path.insert(0, {root!r})
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings_primary"
    import django
    django.setup()
    from django.db import connections
    from django.db.models import Prefetch, Sum
    from tests.testapp.models import Author, Book
    from vinyl import atomic, close_pools, sync_mode

    def check_sync():
        with sync_mode():
            assert Book.vinyl.count() == 2
            assert Book.vinyl.aggregate(t=Sum("pages")) == {{"t": 3}}
            with atomic(using="primary"):
                Author.vinyl.create(name="Sync")
            assert Author.vinyl.filter(name="Sync").delete()[0] == 1

    async def check_async():
        before = connections["default"]
        assert await Book.vinyl.count() == 2
        assert await Book.vinyl.aggregate(t=Sum("pages")) == {{"t": 3}}
        authors = await Author.vinyl.prefetch_related(Prefetch("books", Book.vinyl.all()))
        assert len(authors[0].books.all()) == 2
        assert len(await Book.vinyl.in_bulk()) == 2
        async with atomic(using="primary"):
            await Author.vinyl.create(name="Async")
        assert (await Author.vinyl.filter(name="Async").delete())[0] == 1
        assert connections["default"] is before
        await close_pools()

    check_sync()
    asyncio.run(check_async())
    print("ok")
    """
)


def test_empty_default_layout(books):
    """Django's documented {"default": {}, "primary": {...}} layout, routed to "primary"."""
    env = {**os.environ, "VINYL_DATABASE_NAME": connections["default"].settings_dict["NAME"]}
    code = SCRIPT.format(root=ROOT)
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
    assert proc.stderr == ""
