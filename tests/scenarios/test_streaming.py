"""iterator(chunk_size) in both modes: Django's results, per-chunk prefetch, flat memory."""

import tracemalloc
from contextlib import contextmanager

import pytest
from django.db import connection
from django.db.models import Count, F, Prefetch, Value
from django.db.models.functions import Concat
from django.test.utils import CaptureQueriesContext

from tests.helpers import collect
from tests.testapp.models import Author, Book, Tag
from vinyl import atomic, maybe_async
from vinyl.connection import NO_RESULTS, capture_queries, run
from vinyl.testing import both_modes

# Querysets to stream, built from a manager (Book.objects for Django, Book.vinyl for vinyl).
CASES = {
    "objects": lambda m: m.order_by("pk"),
    "select_related": lambda m: m.select_related("author", "editor").order_by("-pages", "pk"),
    "values": lambda m: m.values("title", "pages").order_by("pk"),
    "values_list_flat": lambda m: m.order_by("title").values_list("title", flat=True),
    "values_list_named": lambda m: m.values_list("pk", "author__name", named=True).order_by("pk"),
    # ordering by a column that is not selected: Django adds it to the SELECT and strips it
    "extra_select_column": lambda m: m.values("title").order_by("author__name", "pk"),
    "annotate": lambda m: m.annotate(n=Count("tags"), label=Concat("title", Value("!"))).order_by(
        "pk"
    ),
    "only": lambda m: m.only("title").order_by("pk"),
    "filter_empty": lambda m: m.filter(pages__gt=10_000),
    "none": lambda m: m.none(),
    "dates": lambda m: m.dates("published", "month"),
    "distinct_expression": lambda m: (
        m.annotate(p2=F("pages") * 2).values_list("p2").distinct().order_by("p2")
    ),
}


def plain(value):
    """Objects to comparable data (model instances by their field values)."""
    if hasattr(value, "_meta"):
        return (type(value).__name__, {k: v for k, v in value.__dict__.items() if k != "_state"})
    return value


@pytest.fixture
def library(db):
    ann = Author.objects.create(name="Ann")
    bob = Author.objects.create(name="Bob")
    red, blue = Tag.objects.create(name="red"), Tag.objects.create(name="blue")
    from django.utils import timezone

    for i in range(7):
        book = Book.objects.create(
            author=ann if i % 2 else bob,
            editor=bob if i % 3 == 0 else None,
            title=f"T{i}",
            pages=i * 10,
            published=timezone.now() if i % 2 else None,
        )
        book.tags.set([red, blue][: i % 3])


@pytest.fixture
def django_streams(library):
    return {
        name: [plain(x) for x in build(Book.objects).iterator(chunk_size=2)]
        for name, build in CASES.items()
    }


@both_modes
def test_iterator_matches_django(django_streams, vinyl_mode):
    for name, build in CASES.items():
        for chunk_size in (2, 3, None):
            found = yield collect(build(Book.vinyl).iterator(chunk_size=chunk_size), vinyl_mode)
            assert [plain(x) for x in found] == django_streams[name], (name, chunk_size)


@both_modes
def test_iterator_fetches_in_chunks_with_a_server_side_cursor(library, vinyl_mode):
    with capture_queries() as log:
        found = yield collect(Book.vinyl.order_by("pk").iterator(chunk_size=3), vinyl_mode)
    assert len(found) == 7
    statements = [sql for sql, _ in log]
    assert sum(sql.startswith("SELECT") for sql in statements) == 1
    if vinyl_mode == "async":  # its own transaction around the cursor
        assert statements[0] == "BEGIN" and statements[-1] == "COMMIT"
    else:  # Django's chunked cursor: a named cursor, held past the autocommit transaction
        with CaptureQueriesContext(connection) as ctx:
            yield collect(Book.vinyl.order_by("pk").iterator(chunk_size=3), vinyl_mode)
        (query,) = ctx.captured_queries
        assert query["sql"].startswith("DECLARE") and "WITH HOLD" in query["sql"]


@both_modes
def test_iterator_does_not_fill_the_result_cache(library, vinyl_mode):
    qs = Book.vinyl.order_by("pk")
    found = yield collect(qs.iterator(), vinyl_mode)
    assert len(found) == 7 and qs._result_cache is None


@contextmanager
def counting(vinyl_mode):
    if vinyl_mode == "sync":
        log = []
        with CaptureQueriesContext(connection) as ctx:
            yield log
        log.extend(q["sql"] for q in ctx.captured_queries)
    else:
        with capture_queries() as captured:
            log = []
            yield log
        log.extend(sql for sql, _ in captured if sql.startswith("SELECT"))


PREFETCHED = {
    "tags_and_author": (
        lambda m, src: m.prefetch_related("tags", "author__books").order_by("pk"),
        lambda b: (
            b.title,
            sorted(t.name for t in b.tags.all()),
            b.author.name,
            sorted(x.title for x in b.author.books.all()),
        ),
    ),
    "prefetch_object": (
        lambda m, src: m.prefetch_related(
            Prefetch("tags", queryset=src(Tag).order_by("-name"), to_attr="tag_list")
        ).order_by("pk"),
        lambda b: (b.title, [t.name for t in b.tag_list]),
    ),
}


@pytest.fixture
def django_prefetched(library):
    results = {}
    for name, (build, extract) in PREFETCHED.items():
        with CaptureQueriesContext(connection) as ctx:
            data = [
                extract(b) for b in build(Book.objects, lambda m: m.objects).iterator(chunk_size=3)
            ]
        results[name] = (data, len(ctx.captured_queries))
    return results


@both_modes
def test_iterator_prefetches_per_chunk_like_django(django_prefetched, vinyl_mode):
    for name, (build, extract) in PREFETCHED.items():
        with counting(vinyl_mode) as log:
            found = yield collect(
                build(Book.vinyl, lambda m: m.vinyl).iterator(chunk_size=3), vinyl_mode
            )
            data = [extract(b) for b in found]
        expected, expected_count = django_prefetched[name]
        assert data == expected, name
        # 7 rows in chunks of 3: one SELECT, then each lookup's queries once per chunk.
        assert len(log) == expected_count, (name, log)


@both_modes
def test_iterator_arguments_checked_like_django(library):
    with pytest.raises(ValueError, match="chunk_size must be provided"):
        Book.vinyl.prefetch_related("tags").iterator()
    with pytest.raises(ValueError, match="strictly positive"):
        Book.vinyl.iterator(chunk_size=0)
    yield None


_END = object()


def _next(stream, vinyl_mode):
    """The next item of a stream as a maybe-async value (_END at the end)."""
    if vinyl_mode == "sync":
        return next(stream, _END)

    async def step():
        try:
            return await stream.__anext__()
        except StopAsyncIteration:
            return _END

    return step()


@both_modes
def test_iterator_inside_atomic_shares_the_transaction(library, vinyl_mode):
    @atomic
    @maybe_async
    def work():
        yield run(
            "default",
            "UPDATE testapp_book SET title = 'renamed' WHERE title = 'T0'",
            None,
            NO_RESULTS,
        )
        seen = []
        stream = Book.vinyl.order_by("pk").iterator(chunk_size=2)
        while (book := (yield _next(stream, vinyl_mode))) is not _END:
            # The loop body uses the same transaction while the cursor is open.
            count = yield Book.vinyl.filter(pk=book.pk, title=book.title).count()
            seen.append((book.title, count))
        return seen

    seen = yield work()
    assert [t for t, _ in seen] == ["renamed", "T1", "T2", "T3", "T4", "T5", "T6"]
    assert all(n == 1 for _, n in seen)


@both_modes
def test_iterator_inside_atomic_rolled_back_with_the_block(library, vinyl_mode):
    class Boom(Exception):
        pass

    @atomic
    @maybe_async
    def work():
        yield run("default", "UPDATE testapp_book SET title = 'gone'", None, NO_RESULTS)
        stream = Book.vinyl.order_by("pk").iterator(chunk_size=2)
        assert (yield _next(stream, vinyl_mode)).title == "gone"
        raise Boom

    with pytest.raises(Boom):
        yield work()
    titles = yield collect(Book.vinyl.values_list("title", flat=True).iterator(), vinyl_mode)
    assert sorted(titles) == [f"T{i}" for i in range(7)]


def fill(rows):
    author = Author.objects.create(name="Many")
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO testapp_book (author_id, title, pages, price) "
            "SELECT %s, 'a fairly long book title number ' || g, g, 0 "
            "FROM generate_series(1, %s) g",
            [author.pk, rows],
        )
        cursor.execute("ANALYZE testapp_book")
    return rows


@pytest.fixture
def big_table(db):
    return fill(200_000)


@pytest.fixture
def huge_table(db):
    return fill(1_000_000)


def stream_and_measure(rows, vinyl_mode):
    """Stream every Book; return (count, sum of pages, tracemalloc peak in bytes)."""
    tracemalloc.start()
    try:
        count = pages = 0
        stream = Book.vinyl.order_by("pk").iterator(chunk_size=1000)
        if vinyl_mode == "async":

            async def run():
                nonlocal count, pages
                async for book in stream:
                    count += 1
                    pages += book.pages

            yield run()
        else:
            for book in stream:
                count += 1
                pages += book.pages
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == rows and pages == rows * (rows + 1) // 2
    return peak


@both_modes
def test_streaming_memory_stays_flat(big_table, vinyl_mode):
    peak = yield from stream_and_measure(big_table, vinyl_mode)
    # 200,000 Book instances take over 100 MB; a chunk of 1,000 well under 2 MB.
    assert peak < 8 * 1024 * 1024, peak


@pytest.mark.stress
@both_modes
def test_streaming_memory_stays_flat_for_a_million_rows(huge_table, vinyl_mode):
    peak = yield from stream_and_measure(huge_table, vinyl_mode)
    assert peak < 8 * 1024 * 1024, peak


@pytest.fixture
def client_side_cursors(library):
    settings = connection.settings_dict
    settings["DISABLE_SERVER_SIDE_CURSORS"] = True
    try:
        yield
    finally:
        del settings["DISABLE_SERVER_SIDE_CURSORS"]


@both_modes
def test_iterator_with_server_side_cursors_disabled(client_side_cursors, vinyl_mode):
    # PgBouncer in transaction mode: no DECLARE, no transaction of the stream's own.
    with capture_queries() as log:
        found = yield collect(Book.vinyl.order_by("pk").iterator(chunk_size=3), vinyl_mode)
    assert [b.title for b in found] == [f"T{i}" for i in range(7)]
    assert [sql for sql, _ in log if not sql.startswith("SELECT")] == []
    found = yield collect(
        Book.vinyl.prefetch_related("tags").order_by("pk").iterator(chunk_size=3), vinyl_mode
    )
    assert len(found) == 7
