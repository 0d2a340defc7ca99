"""What a type checker sees of vinyl's public API (checked by basedpyright in ``make lint``).

Never run: each ``assert_type`` states the type the checker must infer, and the check fails when
it infers another. vinyl's types are those of async mode (see docs/guide/typing.md): a universal
method returns ``Awaitable[T]`` (in sync mode the call returns ``T`` itself), an a-method is a
coroutine of ``T``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from typing import Any, assert_type, reveal_type

from tests.testapp.models import Author, Book
from vinyl import (
    VinylManager,
    VinylQuerySet,
    atomic,
    gather,
    later,
    maybe_async,
    sync_mode,
)


async def reads() -> None:
    assert_type(Book.vinyl, VinylManager[Book])
    assert_type(await Book.vinyl.get(pk=1), Book)
    assert_type(await Book.vinyl.filter(pages__gt=100), list[Book])
    assert_type(Book.vinyl.filter(pages__gt=100), VinylQuerySet[Book, Book])
    assert_type(Book.vinyl.filter(pages__gt=100).exclude(pk=1), VinylQuerySet[Book, Book])
    assert_type(await Book.vinyl.first(), Book | None)
    assert_type(await Book.vinyl.count(), int)
    assert_type(await Book.vinyl.aget(pk=1), Book)
    assert_type(Book.vinyl.filter().values_list("title"), VinylQuerySet[Book, tuple[Any, ...]])
    assert_type(await Book.vinyl.values_list("title", flat=True), list[Any])
    assert_type(await Book.vinyl.values("title"), list[dict[str, Any]])
    assert_type(Book.vinyl.iterator(chunk_size=100), AsyncIterator[Book])
    async for book in Book.vinyl.order_by("pk"):
        assert_type(book, Book)
        # Relations are looked up by name at run time: their type is not known statically.
        assert_type(await book.q.author, Any)


async def revealed() -> None:
    # `make lint` prints these four (basedpyright's notes).
    book = await Book.vinyl.get(pk=1)
    reveal_type(await Book.vinyl.get(pk=1))  # Book
    reveal_type(await Book.vinyl.filter())  # list[Book]
    reveal_type(await book.q.author)  # Any
    reveal_type(Book.vinyl.filter().values_list())  # VinylQuerySet[Book, tuple[Any, ...]]


async def writes() -> None:
    author = await Author.vinyl.create(name="Ann")
    assert_type(author, Author)
    assert_type(await Book.vinyl.get_or_create(title="T", author=author), tuple[Book, bool])
    assert_type(await Book.vinyl.filter(pk=1).update(pages=2), int)
    assert_type(Book.vinyl(title="T", author=author), Book)
    async with atomic():
        assert_type(await Book.vinyl.filter(pk=1).delete(), tuple[int, dict[str, int]])


@maybe_async
def titles(author: Author):  # universal code: `yield` stands where `await` would
    books = yield Book.vinyl.filter(author=author)
    return [book.title for book in books]


@later
def total(a: int, b: int) -> int:
    return a + b


async def combinators(author: Author) -> None:
    assert_type(await titles(author), list[Any])
    titles("not an author")  # pyright: ignore[reportArgumentType]  (the signature is kept)
    assert_type(total(1, 2), Awaitable[int])
    assert_type(await gather(Book.vinyl.count(), Author.vinyl.count()), list[int])


def sync_code() -> None:
    with sync_mode():
        # Sync mode returns the values themselves; the async-mode types say Awaitable.
        book: Any = Book.vinyl.get(pk=1)
        del book
