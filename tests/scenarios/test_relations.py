"""``obj.q.<relation>`` in both modes: explicit relation fetches, cached where Django caches them."""

import inspect

import pytest
from django.contrib.contenttypes.models import ContentType

from tests.testapp.models import (
    Author,
    AuthorProxy,
    Book,
    Note,
    Place,
    Profile,
    Restaurant,
    Shelf,
    Tag,
)
from vinyl import VinylQuerySet, gather
from vinyl.connection import capture_queries
from vinyl.relations import RelatedManager, RelationNotLoaded, prepare_related
from vinyl.testing import both_modes


@pytest.fixture
def library(db):
    ann = Author.objects.create(name="Ann")
    bob = Author.objects.create(name="Bob")
    Profile.objects.create(author=ann, bio="Ann's bio")
    red, blue = Tag.objects.create(name="red"), Tag.objects.create(name="blue")
    a = Book.objects.create(author=ann, title="A", pages=1)
    b = Book.objects.create(author=ann, editor=bob, title="B", pages=2)
    Book.objects.create(author=bob, title="C", pages=3)
    a.tags.set([red, blue])
    b.tags.set([red])
    shelf = Shelf.objects.create(name="top")
    Note.objects.create(content_object=a, text="on A")
    Note.objects.create(content_object=shelf, text="on shelf 1")
    Note.objects.create(content_object=shelf, text="on shelf 2")
    ContentType.objects.clear_cache()


async def _collect(iterable):
    return [item async for item in iterable]


def _maybe(value, vinyl_mode):
    """Check that a q value follows the mode (an awaitable exactly in async mode)."""
    assert inspect.isawaitable(value) == (vinyl_mode == "async"), value
    return value


@both_modes
def test_forward_fk_fetched_once_and_cached(library, vinyl_mode):
    book = yield Book.vinyl.get(title="B")
    assert not Book.author.is_cached(book)
    with capture_queries() as log:
        author = yield _maybe(book.q.author, vinyl_mode)
    assert len(log) == 1
    assert author.name == "Ann"
    assert Book.author.is_cached(book)
    assert book.author is author  # Django's descriptor now reads the cache: no query, any mode
    with capture_queries() as log:
        again = yield _maybe(book.q.author, vinyl_mode)  # cached: still maybe-async, no query
    assert again is author and log == []
    editor = yield book.q.editor
    assert editor.name == "Bob"


@both_modes
def test_forward_fk_null_and_select_related(library, vinyl_mode):
    book = yield Book.vinyl.select_related("author").get(title="A")
    with capture_queries() as log:
        assert (yield _maybe(book.q.editor, vinyl_mode)) is None  # null FK: no query
        assert (yield book.q.author).name == "Ann"  # select_related: no query
    assert log == []


@both_modes
def test_reverse_fk_is_a_related_manager_of_vinyl_querysets(library):
    ann = yield Author.vinyl.get(name="Ann")
    books = ann.q.books
    assert isinstance(books, RelatedManager)
    qs = books.all()
    assert isinstance(qs, VinylQuerySet)
    # The same queryset as Django's related manager: same SQL.
    assert str(qs.query) == str(Author(pk=ann.pk).books.all().query)
    assert [b.title for b in (yield ann.q.books.order_by("title"))] == ["A", "B"]
    assert sorted(b.title for b in (yield ann.q.books)) == ["A", "B"]
    assert (yield ann.q.books.count()) == 2
    assert (yield ann.q.books.filter(pages__gt=1).get()).title == "B"
    assert (yield ann.q.books.exclude(title="A").exists())
    first = yield ann.q.books.order_by("-pages").first()
    assert first.title == "B"
    bob = yield Author.vinyl.get(name="Bob")
    assert [b.title for b in (yield bob.q.edited)] == ["B"]


@both_modes
def test_related_manager_iterates_in_the_mode(library, vinyl_mode):
    ann = yield Author.vinyl.get(name="Ann")
    if vinyl_mode == "async":
        titles = [b.title for b in (yield _collect(ann.q.books.order_by("title")))]
    else:
        titles = [b.title for b in ann.q.books.order_by("title")]
    assert titles == ["A", "B"]


@both_modes
def test_many_to_many_both_sides(library):
    book = yield Book.vinyl.get(title="A")
    assert sorted(t.name for t in (yield book.q.tags)) == ["blue", "red"]
    red = yield Tag.vinyl.get(name="red")
    assert [b.title for b in (yield red.q.books.order_by("title"))] == ["A", "B"]
    assert (yield red.q.books.filter(author__name="Ann").count()) == 2
    assert str(book.q.tags.all().query) == str(Book(pk=book.pk).tags.all().query)


@both_modes
def test_prefetched_relation_is_served_from_the_cache(library):
    authors = yield Author.vinyl.prefetch_related("books", "books__tags").order_by("name")
    ann = authors[0]
    with capture_queries() as log:
        titles = sorted(b.title for b in (yield ann.q.books))
        tags = {}
        for book in (yield ann.q.books):
            tags[book.title] = sorted(t.name for t in (yield book.q.tags))
        count = yield ann.q.books.count()
    assert log == []
    assert titles == ["A", "B"] and count == 2
    assert tags == {"A": ["blue", "red"], "B": ["red"]}
    # Filtering a prefetched relation runs a query, as in Django.
    with capture_queries() as log:
        assert [b.title for b in (yield ann.q.books.filter(pages=2))] == ["B"]
    assert len(log) == 1


@both_modes
def test_reverse_one_to_one(library):
    ann, bob = yield Author.vinyl.order_by("name")
    with capture_queries() as log:
        profile = yield ann.q.profile
    assert len(log) == 1
    assert profile.bio == "Ann's bio"
    assert Author.profile.is_cached(ann) and ann.profile is profile
    assert Profile.author.is_cached(profile) and profile.author is ann  # both sides, as Django
    with pytest.raises(Profile.DoesNotExist) as info:
        yield bob.q.profile
    assert isinstance(info.value, Author.profile.RelatedObjectDoesNotExist)
    with capture_queries() as log:  # the miss is cached too, as Django caches it
        with pytest.raises(Author.profile.RelatedObjectDoesNotExist):
            yield bob.q.profile
    assert log == []
    # And the forward side of the one-to-one.
    profile = yield Profile.vinyl.get()
    assert (yield profile.q.author).name == "Ann"


@pytest.fixture
def places(db):
    Restaurant.objects.create(name="Luigi", city="Rome", serves_pizza=True)
    Place.objects.create(name="Park")


@both_modes
def test_multi_table_inheritance_links(places):
    restaurant = yield Restaurant.vinyl.get()
    with capture_queries() as log:
        place = yield restaurant.q.place_ptr  # built from the child's own columns, as Django
    assert log == []
    assert (place.pk, place.name, type(place)) == (restaurant.pk, "Luigi", Place)
    park, luigi = (yield Place.vinyl.get(name="Park")), (yield Place.vinyl.get(name="Luigi"))
    assert (yield luigi.q.restaurant).serves_pizza is True
    with pytest.raises(Restaurant.DoesNotExist):
        yield park.q.restaurant


@both_modes
def test_generic_foreign_key_and_generic_relation(library, vinyl_mode):
    note = yield Note.vinyl.get(text="on A")
    book = yield note.q.content_object
    assert isinstance(book, Book) and book.title == "A"
    field = Note._meta.get_field("content_object")
    assert field.is_cached(note) and note.content_object is book
    shelf = yield Shelf.vinyl.get()
    ContentType.objects.clear_cache()
    if vinyl_mode == "async":
        # The generic relation's manager needs Shelf's ContentType: not cached, no implicit query.
        with pytest.raises(RelationNotLoaded, match=r"await vinyl.relations.prepare_related"):
            _ = shelf.q.notes
    with capture_queries() as log:
        assert (yield prepare_related(shelf, "notes")) is None  # the ContentType query
    assert len(log) == 1  # Django's ContentType query runs through vinyl in both modes
    assert isinstance(shelf.q.notes, RelatedManager)
    notes = yield shelf.q.notes.order_by("text")
    assert [n.text for n in notes] == ["on shelf 1", "on shelf 2"]
    assert (yield shelf.q.notes.count()) == 2  # the ContentType is cached now
    assert str(shelf.q.notes.all().query) == str(Shelf(pk=shelf.pk).notes.all().query)


@both_modes
def test_unknown_relation_names_the_valid_ones(library):
    book = yield Book.vinyl.get(title="A")
    with pytest.raises(AttributeError) as info:
        _ = book.q.writer
    message = str(info.value)
    assert "'writer'" in message
    for name in ("author", "editor", "tags", "chapters"):
        assert name in message
    with pytest.raises(AttributeError):
        _ = book.q.title  # a field, not a relation
    assert {"author", "editor", "tags"} <= set(dir(book.q))
    yield None


@both_modes
def test_related_writes_are_not_delegated_to_the_unfiltered_queryset(library):
    ann = yield Author.vinyl.get(name="Ann")
    # A queryset's create() would not set the author: the related manager must never pass it on.
    for name in ("create", "add", "remove", "clear", "set", "get_or_create"):
        if any(name in vars(cls) for cls in type(ann.q.books).__mro__[:-1]):
            continue  # implemented by vinyl's related writes (vinyl.model.related_writes.RelatedWrites)
        with pytest.raises(AttributeError):
            getattr(ann.q.books, name)


@both_modes
def test_proxy_models_and_unsaved_instances(library):
    ann = yield AuthorProxy.vinyl.get(name="Ann")
    assert ann.shout() == "ANN"
    assert sorted(b.title for b in (yield ann.q.books)) == ["A", "B"]
    assert (yield ann.q.profile).bio == "Ann's bio"
    with pytest.raises(ValueError, match="primary key"):  # as Django's related manager
        Author(name="new").q.books.all()
    book = Book(title="unsaved")
    assert (yield book.q.editor) is None  # no FK value: no query, as Django


@both_modes
def test_concurrent_relation_fetches_and_prefetches(library):
    books = yield Book.vinyl.order_by("pk")
    authors = yield gather(*(book.q.author for book in books))
    assert [a.name for a in authors] == ["Ann", "Ann", "Bob"]
    assert all(book.author is author for book, author in zip(books, authors, strict=True))
    # Prefetches replayed concurrently (async mode): each keeps its own tape.
    results = yield gather(
        *(Author.vinyl.prefetch_related("books__tags").order_by("pk") for _ in range(5)),
        *(Tag.vinyl.prefetch_related("books__author").order_by("pk") for _ in range(5)),
    )
    for authors in results[:5]:
        assert [sorted(b.title for b in a.books.all()) for a in authors] == [["A", "B"], ["C"]]
    for tags in results[5:]:
        assert [sorted(b.author.name for b in t.books.all()) for t in tags] == [
            ["Ann", "Ann"],
            ["Ann"],
        ]


@both_modes
def test_create_with_a_generic_foreign_key_on_a_cold_content_type_cache(library, vinyl_mode):
    # GenericForeignKey.__set__ looks the content type up: in async mode the constructor runs
    # in vinyl's worker thread, its query in the calling task.
    shelf = yield Shelf.vinyl.create(name="cold")
    ContentType.objects.clear_cache()
    note = yield Note.vinyl.create(content_object=shelf, text="on a cold cache")
    assert note.content_object is shelf
    assert note.content_type.model == "shelf"
    assert [n.text for n in (yield shelf.q.notes.order_by("pk"))] == ["on a cold cache"]
