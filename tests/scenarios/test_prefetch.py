"""prefetch_related in both modes: the same objects as Django, with the same number of queries."""

from contextlib import contextmanager

import pytest
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.models import Prefetch
from django.test.utils import CaptureQueriesContext

from tests.testapp.models import Author, Book, Chapter, Note, Profile, Shelf, Tag
from vinyl.connection import capture_queries
from vinyl.testing import both_modes


def titles(books):
    return sorted(b.title for b in books)


# Each case: model, how to build the queryset from a manager and a Prefetch-queryset source,
# and how to turn the result into plain data (reading only what was prefetched).
CASES = {
    "forward_fk": (
        Book,
        lambda m, src: m.prefetch_related("author", "editor").order_by("pk"),
        lambda objs: [(b.title, b.author.name, b.editor and b.editor.name) for b in objs],
    ),
    "reverse_fk": (
        Author,
        lambda m, src: m.prefetch_related("books").order_by("pk"),
        lambda objs: [(a.name, titles(a.books.all())) for a in objs],
    ),
    "m2m": (
        Book,
        lambda m, src: m.prefetch_related("tags").order_by("pk"),
        lambda objs: [(b.title, sorted(t.name for t in b.tags.all())) for b in objs],
    ),
    "m2m_reverse_then_fk": (
        Tag,
        lambda m, src: m.prefetch_related("books__author").order_by("pk"),
        lambda objs: [
            (t.name, sorted((b.title, b.author.name) for b in t.books.all())) for t in objs
        ],
    ),
    "nested": (
        Author,
        lambda m, src: m.prefetch_related("books__tags", "books__chapters").order_by("pk"),
        lambda objs: [
            (
                a.name,
                sorted(
                    (
                        b.title,
                        sorted(t.name for t in b.tags.all()),
                        sorted(c.number for c in b.chapters.all()),
                    )
                    for b in a.books.all()
                ),
            )
            for a in objs
        ],
    ),
    "reverse_o2o": (
        Author,
        lambda m, src: m.prefetch_related("profile").order_by("pk"),
        lambda objs: [(a.name, getattr(getattr(a, "profile", None), "bio", None)) for a in objs],
    ),
    "forward_o2o": (
        Profile,
        lambda m, src: m.prefetch_related("author__books").order_by("pk"),
        lambda objs: [(p.bio, p.author.name, titles(p.author.books.all())) for p in objs],
    ),
    "prefetch_to_attr": (
        Author,
        lambda m, src: m.prefetch_related(
            Prefetch(
                "books",
                queryset=src(Book).filter(pages__gt=1).order_by("-pages"),
                to_attr="long_books",
            )
        ).order_by("pk"),
        lambda objs: [(a.name, [b.title for b in a.long_books]) for a in objs],
    ),
    "prefetch_queryset_with_select_and_prefetch": (
        Author,
        lambda m, src: m.prefetch_related(
            Prefetch(
                "books",
                queryset=src(Book).select_related("editor").prefetch_related("tags"),
            )
        ).order_by("pk"),
        lambda objs: [
            (
                a.name,
                sorted(
                    (
                        b.title,
                        b.editor and b.editor.name,
                        sorted(t.name for t in b.tags.all()),
                    )
                    for b in a.books.all()
                ),
            )
            for a in objs
        ],
    ),
    "prefetch_sliced": (
        Author,
        lambda m, src: m.prefetch_related(
            Prefetch("books", queryset=src(Book).order_by("title")[:1], to_attr="first_book")
        ).order_by("pk"),
        lambda objs: [(a.name, [b.title for b in a.first_book]) for a in objs],
    ),
    "prefetch_chapters_then_book": (
        Chapter,
        lambda m, src: m.prefetch_related("book__author", "book__tags").order_by("pk"),
        lambda objs: [
            (c.title, c.book.title, c.book.author.name, sorted(t.name for t in c.book.tags.all()))
            for c in objs
        ],
    ),
    "generic_fk": (
        Note,
        lambda m, src: m.prefetch_related("content_object").order_by("pk"),
        lambda objs: [
            (n.text, type(n.content_object).__name__, str(n.content_object.pk)) for n in objs
        ],
    ),
    "generic_relation": (
        Shelf,
        lambda m, src: m.prefetch_related("notes").order_by("pk"),
        lambda objs: [(s.name, sorted(n.text for n in s.notes.all())) for s in objs],
    ),
    # A replayed prefetch must ask the same queries on every pass, although an earlier pass
    # cached some relations already (here: the author of each book, then the author's books).
    "two_lookups_sharing_a_path": (
        Book,
        lambda m, src: m.prefetch_related("tags", "author__books").order_by("pk"),
        lambda objs: [
            (b.title, sorted(t.name for t in b.tags.all()), titles(b.author.books.all()))
            for b in objs
        ],
    ),
    "select_related_then_prefetch_deeper": (
        Book,
        lambda m, src: (
            m.select_related("author")
            .prefetch_related("author__books__tags", "editor__edited")
            .order_by("pk")
        ),
        lambda objs: [
            (
                b.title,
                b.author.name,
                sorted(
                    (x.title, sorted(t.name for t in x.tags.all())) for x in b.author.books.all()
                ),
                b.editor and titles(b.editor.edited.all()),
            )
            for b in objs
        ],
    ),
    "values_no_prefetch_effect": (
        Author,
        lambda m, src: m.order_by("pk").values_list("name", flat=True),
        list,
    ),
}


@pytest.fixture
def library(db):
    ann = Author.objects.create(name="Ann")
    bob = Author.objects.create(name="Bob")
    Author.objects.create(name="Cy")  # no books, no profile
    Profile.objects.create(author=ann, bio="Ann's")
    Profile.objects.create(author=bob, bio="Bob's")
    red, blue = Tag.objects.create(name="red"), Tag.objects.create(name="blue")
    Tag.objects.create(name="unused")
    books = [
        Book.objects.create(author=ann, title="A", pages=1),
        Book.objects.create(author=ann, editor=bob, title="B", pages=5),
        Book.objects.create(author=bob, editor=ann, title="C", pages=3),
        Book.objects.create(author=bob, title="D", pages=2),
    ]
    books[0].tags.set([red, blue])
    books[1].tags.set([red])
    books[2].tags.set([blue])
    for i, book in enumerate(books[:3]):
        Chapter.objects.create(book=book, number=1, title=f"{book.title}1")
        Chapter.objects.create(book=book, number=2 + i, title=f"{book.title}2")
    shelf, empty = Shelf.objects.create(name="top"), Shelf.objects.create(name="empty")
    assert empty
    Note.objects.create(content_object=books[0], text="on A")
    Note.objects.create(content_object=ann, text="on Ann")
    Note.objects.create(content_object=shelf, text="on shelf")
    Note.objects.create(content_object=shelf, text="on shelf again")


@pytest.fixture
def django_results(library):
    """What Django's own ORM returns for every case, and how many queries it runs."""
    results = {}
    for name, (model, build, extract) in CASES.items():
        ContentType.objects.clear_cache()
        with CaptureQueriesContext(connection) as ctx:
            data = extract(list(build(model.objects, lambda m: m.objects)))
        results[name] = (data, len(ctx.captured_queries))
    ContentType.objects.clear_cache()
    return results


@contextmanager
def counting(vinyl_mode):
    """Count the queries of the block: Django's connection in sync mode, vinyl's in async."""
    if vinyl_mode == "sync":
        log = []
        with CaptureQueriesContext(connection) as ctx:
            yield log
        log.extend(ctx.captured_queries)  # a slice taken at exit
    else:
        with capture_queries() as log:
            yield log


@pytest.mark.parametrize("prefetch_source", ["vinyl", "django"])
@both_modes
def test_prefetch_matches_django(django_results, vinyl_mode, prefetch_source):
    for name, (model, build, extract) in CASES.items():
        source = (lambda m: m.vinyl) if prefetch_source == "vinyl" else (lambda m: m.objects)
        ContentType.objects.clear_cache()
        with counting(vinyl_mode) as log:
            objs = yield build(model.vinyl, source)
        count = len(log)
        # Everything was prefetched: reading it runs no query (async mode would raise).
        with counting(vinyl_mode) as log:
            data = extract(objs)
        assert log == [], name
        expected, expected_count = django_results[name]
        assert data == expected, name
        assert count == expected_count, (name, count, expected_count)


@both_modes
def test_prefetch_with_get_first_and_relations(library):
    ann = yield Author.vinyl.prefetch_related("books__tags").get(name="Ann")
    assert titles(ann.books.all()) == ["A", "B"]
    first = yield Book.vinyl.prefetch_related("tags").order_by("title").first()
    assert sorted(t.name for t in first.tags.all()) == ["blue", "red"]
    # The prefetched relation is what obj.q.<relation> reads, with no query.
    with capture_queries() as log:
        assert titles((yield ann.q.books)) == ["A", "B"]
    assert log == []


@both_modes
def test_prefetch_on_empty_result_runs_no_prefetch_query(library, vinyl_mode):
    with counting(vinyl_mode) as log:
        found = yield Author.vinyl.filter(name="nobody").prefetch_related("books__tags")
    assert found == [] and len(log) == 1


@both_modes
def test_prefetch_errors_like_django(library):
    with pytest.raises(AttributeError, match="Cannot find 'nothing'"):
        yield Author.vinyl.prefetch_related("nothing")
    with pytest.raises(ValueError, match="lookup was already seen"):
        yield Author.vinyl.prefetch_related(
            Prefetch("books", queryset=Book.vinyl.filter(pages=1)),
            Prefetch("books", queryset=Book.vinyl.filter(pages=2)),
        )
