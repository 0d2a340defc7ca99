"""Async mode: touching an unloaded relation or deferred field is a clear error naming the fix."""

import django
import pytest
from django.contrib.contenttypes.models import ContentType
from django.db.models import Prefetch

from tests.testapp.models import Author, Book, Note, Place, Profile, Restaurant
from vinyl import ImplicitQueryError, async_mode, sync_mode
from vinyl.db.pool import close_pools
from vinyl.relations import DeferredFieldNotLoaded, RelationNotLoaded

pytestmark = pytest.mark.anyio


@pytest.fixture
def library(db):
    ann = Author.objects.create(name="Ann")
    Profile.objects.create(author=ann, bio="bio")
    book = Book.objects.create(author=ann, title="A", pages=7)
    Note.objects.create(content_object=book, text="n")
    Restaurant.objects.create(name="Luigi", serves_pizza=True)
    ContentType.objects.clear_cache()


@pytest.fixture
async def pools():
    """Close this event loop's pools after the test, so the test database can be dropped."""
    yield
    await close_pools()


async def test_unloaded_forward_relation_names_the_fixes(library, pools):
    book = await Book.vinyl.get()
    with pytest.raises(RelationNotLoaded) as info:
        book.author  # noqa: B018
    assert isinstance(info.value, ImplicitQueryError)
    message = str(info.value)
    assert "Book.author is not loaded" in message
    assert "await book.q.author" in message
    assert "select_related('author')" in message and "prefetch_related('author')" in message
    assert not Book.author.is_cached(book)  # nothing half-done
    # The fix works, and afterwards the attribute reads the cache.
    author = await book.q.author
    assert book.author is author


async def test_loaded_relations_need_no_query(library, pools):
    book = await Book.vinyl.select_related("author").get()
    assert book.author.name == "Ann"
    assert book.editor is None  # a null FK needs no query either
    (book,) = await Book.vinyl.prefetch_related("author", "tags")
    assert book.author.name == "Ann"
    assert list(book.tags.all()) == []
    (author,) = await Author.vinyl.prefetch_related(Prefetch("books", to_attr="all_books"))
    assert [b.title for b in author.all_books] == ["A"]
    restaurant = await Restaurant.vinyl.get()
    assert restaurant.place_ptr.name == "Luigi"  # parent link: built from the row, no query


async def test_unloaded_reverse_one_to_one(library, pools):
    author = await Author.vinyl.get()
    with pytest.raises(RelationNotLoaded, match=r"await author\.q\.profile"):
        author.profile  # noqa: B018
    assert (await author.q.profile).bio == "bio"
    assert author.profile.bio == "bio"
    place = await Place.vinyl.get()
    with pytest.raises(RelationNotLoaded, match=r"await place\.q\.restaurant"):
        place.restaurant  # noqa: B018


async def test_unevaluated_related_manager_queryset(library, pools):
    author = await Author.vinyl.get()
    with pytest.raises(ImplicitQueryError, match="await qs"):
        list(author.books.all())
    assert [b.title for b in await author.q.books] == ["A"]


async def test_deferred_fields(library, pools):
    book = await Book.vinyl.only("title").get()
    assert book.title == "A"
    with pytest.raises(DeferredFieldNotLoaded) as info:
        book.pages  # noqa: B018
    message = str(info.value)
    assert "Book.pages was deferred" in message and ".only()" in message
    with pytest.raises(DeferredFieldNotLoaded, match="author_id"):
        book.author_id  # noqa: B018
    with pytest.raises(DeferredFieldNotLoaded):
        book.author  # noqa: B018 - needs author_id first
    book = await Book.vinyl.defer("pages").get()
    with pytest.raises(DeferredFieldNotLoaded):
        book.pages  # noqa: B018
    assert book.author_id is not None


@pytest.mark.skipif(django.VERSION < (6, 1), reason="GenericForeignKey has its own descriptor")
async def test_unloaded_generic_foreign_key(library, pools):
    note = await Note.vinyl.get()
    with pytest.raises(RelationNotLoaded, match=r"await note\.q\.content_object"):
        note.content_object  # noqa: B018
    assert (await note.q.content_object).title == "A"
    assert note.content_object.title == "A"


def test_async_mode_without_a_loop_refuses_too(library):
    # set_async(True) in a thread without a loop: Django's lazy load would run a blocking query
    # that nothing awaits; the guard refuses it as in a coroutine.
    with sync_mode():
        book = Book.vinyl.get()
    with async_mode(), pytest.raises(RelationNotLoaded):
        book.author  # noqa: B018


def test_sync_mode_keeps_djangos_lazy_loading(library):
    with sync_mode():
        book = Book.vinyl.only("title").get()
        assert book.pages == 7  # Django's deferred load
        assert book.author.name == "Ann"  # Django's lazy relation load
        assert book.author.profile.bio == "bio"
