"""Related-manager writes through ``obj.q`` in both modes: reverse foreign keys and many-to-manys
(create, get_or_create, update_or_create, add, remove, clear, set, through_defaults), with
m2m_changed signals, query counts, and a differential check against Django's related managers.
"""

from __future__ import annotations

import pytest
from django.db.models import signals

import vinyl
from tests.helpers import (
    assert_same_as_django,
    run_with_django,
    statements,
)
from tests.testapp.models import Author, Book, Note, Shelf, Tag, WGroup, WMembership
from vinyl.connection import capture_queries
from vinyl.testing import both_modes


@pytest.fixture
def people(db):
    ann = Author.objects.create(name="Ann")
    bob = Author.objects.create(name="Bob")
    return ann, bob


@both_modes
def test_reverse_fk_create_get_or_create_update_or_create(people):
    ann, _ = people
    with capture_queries() as log:
        book = yield ann.q.books.create(title="A")
    assert len(log) == 1 and book.author_id == ann.pk and book.pk
    same, created = yield ann.q.books.get_or_create(title="A")
    assert not created and same.pk == book.pk
    other, created = yield ann.q.books.update_or_create(title="B", defaults={"pages": 3})
    assert created and other.author_id == ann.pk and other.pages == 3
    assert (yield ann.q.books.count()) == 2
    with pytest.raises(TypeError, match="many-to-many"):
        yield ann.q.books.create(title="C", through_defaults={})


@both_modes
def test_reverse_fk_add_bulk_and_not_bulk(people):
    ann, bob = people
    books = yield Book.vinyl.bulk_create([Book(author=bob, title=t) for t in "ab"])
    with capture_queries() as log:
        yield ann.q.books.add(*books)
    assert len(log) == 1 and log[0][0].startswith("UPDATE")
    assert all(b.author_id == ann.pk for b in books)
    assert (yield Book.vinyl.filter(author=ann).count()) == 2
    fresh = Book(title="new", author=bob)
    with pytest.raises(ValueError, match="isn't saved"):
        yield ann.q.books.add(fresh)
    yield ann.q.books.add(fresh, bulk=False)
    assert fresh.pk and fresh.author_id == ann.pk
    with pytest.raises(TypeError, match="'Book' instance expected"):
        yield ann.q.books.add(ann)


@both_modes
def test_reverse_fk_remove_clear_set_on_a_nullable_key(people):
    ann, bob = people
    a, b, c = yield Book.vinyl.bulk_create([Book(author=bob, title=t) for t in "abc"])
    yield ann.q.edited.add(a, b)
    assert sorted((yield ann.q.edited.values_list("title", flat=True))) == ["a", "b"]
    yield ann.q.edited.remove(a)
    assert (yield ann.q.edited.values_list("title", flat=True)) == ["b"]
    with pytest.raises(Author.DoesNotExist, match="is not related"):
        yield ann.q.edited.remove(c)
    yield ann.q.edited.set([c])  # removes b, adds c
    assert (yield ann.q.edited.values_list("title", flat=True)) == ["c"]
    yield ann.q.edited.set(Book.vinyl.filter(title__in=["a", "b"]), clear=True)
    assert sorted((yield ann.q.edited.values_list("title", flat=True))) == ["a", "b"]
    yield ann.q.edited.clear(bulk=False)
    assert (yield ann.q.edited.count()) == 0
    with pytest.raises(AttributeError, match="null=False"):
        yield ann.q.books.clear()


@pytest.fixture
def m2m_signals(db):
    sent = []

    def receiver(sender, **kwargs):
        pk_set = kwargs["pk_set"]
        sent.append((kwargs["action"], kwargs["reverse"], kwargs["model"].__name__,
                     None if pk_set is None else sorted(pk_set)))  # fmt: skip

    signals.m2m_changed.connect(receiver, sender=Book.tags.through, weak=False)
    yield sent
    signals.m2m_changed.disconnect(receiver, sender=Book.tags.through)


@both_modes
def test_m2m_add_remove_clear_set_with_signals(people, m2m_signals):
    ann, _ = people
    book = yield Book.vinyl.create(author=ann, title="A")
    t1, t2, t3 = yield Tag.vinyl.bulk_create([Tag(name=n) for n in "xyz"])
    yield book.q.tags.add(t1, t2.pk)
    yield book.q.tags.add(t1)  # already there: nothing added
    assert sorted((yield book.q.tags.values_list("name", flat=True))) == ["x", "y"]
    yield book.q.tags.remove(t1)
    yield book.q.tags.set([t2, t3])
    assert sorted((yield book.q.tags.values_list("name", flat=True))) == ["y", "z"]
    yield t1.q.books.add(book)  # the reverse side
    yield book.q.tags.clear()
    assert (yield book.q.tags.count()) == 0
    assert m2m_signals == [
        ("pre_add", False, "Tag", [t1.pk, t2.pk]),
        ("post_add", False, "Tag", [t1.pk, t2.pk]),
        ("pre_add", False, "Tag", []),
        ("post_add", False, "Tag", []),
        ("pre_remove", False, "Tag", [t1.pk]),
        ("post_remove", False, "Tag", [t1.pk]),
        ("pre_add", False, "Tag", [t3.pk]),
        ("post_add", False, "Tag", [t3.pk]),
        ("pre_add", True, "Book", [book.pk]),
        ("post_add", True, "Book", [book.pk]),
        ("pre_clear", False, "Tag", None),
        ("post_clear", False, "Tag", None),
    ]


@both_modes
def test_m2m_fast_add_without_listeners_is_one_insert(people):
    ann, _ = people
    book = yield Book.vinyl.create(author=ann, title="A")
    tags = yield Tag.vinyl.bulk_create([Tag(name=n) for n in "abc"])
    with capture_queries() as log:
        yield book.q.tags.add(*tags)
    assert len(statements(log, "INSERT")) == 1 and not statements(log, "SELECT")
    assert (yield book.q.tags.count()) == 3


@both_modes
def test_m2m_create_and_through_defaults(people):
    ann, bob = people
    group = yield WGroup.vinyl.create(name="g")
    yield group.q.members.add(ann, through_defaults={"role": "admin"})
    carl = yield group.q.members.create(name="Carl", through_defaults={"role": "guest"})
    dan, created = yield group.q.members.get_or_create(name="Dan")
    assert created
    yield group.q.members.set([ann, bob], through_defaults={"role": lambda: "new"})
    roles = yield WMembership.vinyl.order_by("author__name").values_list("author__name", "role")
    assert roles == [("Ann", "admin"), ("Bob", "new")]
    assert carl.pk and dan.pk
    yield ann.q.wgroups.remove(group)
    assert (yield group.q.members.count()) == 1


@both_modes
def test_prefetched_cache_is_dropped_by_writes(people):
    ann, _ = people
    book = yield Book.vinyl.create(author=ann, title="A")
    tag = yield Tag.vinyl.create(name="x")
    fetched = yield Book.vinyl.prefetch_related("tags").get(pk=book.pk)
    assert "tags" in fetched._prefetched_objects_cache
    yield fetched.q.tags.add(tag)
    assert "tags" not in fetched._prefetched_objects_cache
    assert [t.name for t in (yield fetched.q.tags.all())] == ["x"]


@both_modes
def test_generic_relation_writes_name_the_way_out(db):
    shelf = yield Shelf.vinyl.create(name="s")
    yield vinyl.relations.prepare_related(shelf, "notes")
    with pytest.raises(Exception, match="generic relations"):
        yield shelf.q.notes.create(text="n")
    assert (yield Note.vinyl.count()) == 0


@pytest.mark.anyio
async def test_native_a_methods_of_related_writes(people):
    ann, _ = people
    book = await ann.q.books.acreate(title="A")
    tag = await Tag.vinyl.acreate(name="t")
    await book.q.tags.aadd(tag)
    await book.q.tags.aremove(tag)
    await book.q.tags.aset([tag])
    assert await book.q.tags.acount() == 1
    await book.q.tags.aclear()
    assert await book.q.tags.acount() == 0
    await vinyl.close_pools()


# -- differential ----------------------------------------------------------------------------------


def _django_ops() -> None:
    ann, bob = Author.objects.create(name="Ann"), Author.objects.create(name="Bob")
    a = ann.books.create(title="a")
    b = Book.objects.create(author=bob, title="b")
    ann.books.add(b)
    ann.edited.add(a, b)
    ann.edited.remove(a)
    tags = Tag.objects.bulk_create([Tag(name=n) for n in "xyz"])
    a.tags.add(*tags[:2])
    a.tags.set([tags[1], tags[2]])
    tags[0].books.add(b)
    b.tags.remove(tags[0])
    group = WGroup.objects.create(name="g")
    group.members.add(ann, through_defaults={"role": "admin"})
    group.members.create(name="Carl", through_defaults={"role": "guest"})
    group.members.set([bob], clear=True, through_defaults={"role": "x"})


@vinyl.maybe_async
def _vinyl_ops():
    ann = yield Author.vinyl.create(name="Ann")
    bob = yield Author.vinyl.create(name="Bob")
    a = yield ann.q.books.create(title="a")
    b = yield Book.vinyl.create(author=bob, title="b")
    yield ann.q.books.add(b)
    yield ann.q.edited.add(a, b)
    yield ann.q.edited.remove(a)
    tags = yield Tag.vinyl.bulk_create([Tag(name=n) for n in "xyz"])
    yield a.q.tags.add(*tags[:2])
    yield a.q.tags.set([tags[1], tags[2]])
    yield tags[0].q.books.add(b)
    yield b.q.tags.remove(tags[0])
    group = yield WGroup.vinyl.create(name="g")
    yield group.q.members.add(ann, through_defaults={"role": "admin"})
    yield group.q.members.create(name="Carl", through_defaults={"role": "guest"})
    yield group.q.members.set([bob], clear=True, through_defaults={"role": "x"})


DIFF_MODELS = (Author, Book, Tag, Book.tags.through, WGroup, WMembership)


@pytest.fixture
def django_result(db):
    return run_with_django(_django_ops, DIFF_MODELS)


@both_modes
def test_same_database_state_and_statements_as_django(django_result):
    yield assert_same_as_django(django_result, _vinyl_ops, DIFF_MODELS)


@both_modes
def test_m2m_get_or_create_looks_among_related_objects(people):
    # Django's ManyRelatedManager.get_or_create() looks the object up among the related ones
    # only (its get_queryset()): an unrelated row that matches is not returned, the create runs
    # and hits the unique constraint (Django's get_or_create.tests.GetOrCreateThroughManyToMany).
    from django.db import IntegrityError

    ann, _ = people
    book = yield Book.vinyl.create(author=ann, title="A")
    yield Tag.vinyl.create(name="foo")
    with pytest.raises(IntegrityError):
        yield book.q.tags.get_or_create(name="foo")
    tag, created = yield book.q.tags.get_or_create(name="bar")
    assert created and [t.name for t in (yield book.q.tags.all())] == ["bar"]
    same, created = yield book.q.tags.update_or_create(name="bar", defaults={"name": "baz"})
    assert not created and same.pk == tag.pk and same.name == "baz"
