"""Django functions with queries mid-logic run once in async mode, as in Django's sync call.

vinyl used to replay them from the start for each query, keyed by repr() of the parameters
(issue 11, item 6): psycopg's Jsonb repr is cut after 35 characters, so two queries could share an
answer; a one-shot iterable was used up by the first pass; and user code inside (on_delete=SET
callables, post_init receivers, custom lookups) ran once per pass.
"""

from __future__ import annotations

import pytest
from django.db.models import CharField, Prefetch, signals
from django.db.models.lookups import Exact
from django.test.utils import register_lookup

from tests.testapp import models as testapp
from tests.testapp.models import AllFields, Author, Book, Chapter, CRef, CTarget
from vinyl.compiler.replay import call_with_io
from vinyl.testing import both_modes

LONG = "x" * 40  # longer than the 35 characters of Jsonb's repr


@pytest.fixture
def library(db):
    ann = Author.objects.create(name="Ann")
    for title in ("A", "B"):
        book = Book.objects.create(author=ann, title=title)
        Chapter.objects.create(book=book, number=1, title=f"{title}1")
    return ann


@pytest.fixture
def two_json_rows(db):
    AllFields.objects.create(data={"k": LONG + "1"})
    AllFields.objects.create(data={"k": LONG + "2"})


@both_modes
def test_queries_with_similar_json_parameters_get_their_own_answers(two_json_rows):
    def two_queries():
        first = list(AllFields.vinyl.filter(data={"k": LONG + "1"}).values_list("data", flat=True))
        second = list(AllFields.vinyl.filter(data={"k": LONG + "2"}).values_list("data", flat=True))
        return first, second

    first, second = yield call_with_io(two_queries)
    assert first == [{"k": LONG + "1"}]
    assert second == [{"k": LONG + "2"}]


@pytest.fixture
def book_pks(library):
    return list(Book.objects.order_by("pk").values_list("pk", flat=True))


@both_modes
def test_in_bulk_of_a_one_shot_iterator(book_pks):
    found = yield Book.vinyl.in_bulk(iter(book_pks[:1]))
    assert list(found) == book_pks[:1]
    found = yield Book.vinyl.in_bulk(pk for pk in book_pks)
    assert sorted(found) == book_pks


@pytest.fixture
def target(db):
    target = CTarget.objects.create(name="t")
    CRef.objects.create(set_by_callable=target)
    CRef.objects.create(cascade=target)
    testapp.SET_CALLS.clear()
    return target


@both_modes
def test_on_delete_set_callable_runs_once_per_collect(target):
    obj = yield CTarget.vinyl.get(pk=target.pk)
    yield obj.delete()
    assert testapp.SET_CALLS == [1]  # as Django's Collector.collect calls it
    assert (yield CRef.vinyl.filter(set_by_callable__isnull=True).count()) == 1


@both_modes
def test_post_init_receivers_run_once_per_object(library):
    built = []

    def receiver(sender, instance, **kwargs):
        built.append(sender.__name__)

    signals.post_init.connect(receiver)
    try:
        authors = yield Author.vinyl.prefetch_related("books__chapters")
    finally:
        signals.post_init.disconnect(receiver)
    assert sorted(built) == ["Author", "Book", "Book", "Chapter", "Chapter"]
    assert [c.title for b in authors[0].books.all() for c in b.chapters.all()] == ["A1", "B1"]


class CountedExact(Exact):
    lookup_name = "counted"
    compiled: list[str] = []

    def as_sql(self, compiler, connection):
        self.compiled.append(self.rhs)
        return super().as_sql(compiler, connection)

    def get_rhs_op(self, connection, rhs):
        return connection.operators["exact"] % rhs


@both_modes
def test_custom_lookup_compiled_once_per_query(library):
    CountedExact.compiled.clear()
    with register_lookup(CharField, CountedExact):
        books = Prefetch("books", Book.vinyl.filter(title__counted="A"))
        authors = yield Author.vinyl.prefetch_related(books, "books__chapters")
    assert [b.title for b in authors[0].books.all()] == ["A"]
    assert CountedExact.compiled == ["A"]  # Django compiles the query once
