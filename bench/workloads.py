"""The workloads, written once per system: vinyl async and sync, Django sync and async, psycopg.

Every system does the same work per operation: the same statements (psycopg's are written by
hand to match the SQL Django generates) and one connection checkout per statement in the pooled
async systems. The ORMs build model instances; psycopg returns tuples.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from django.db import connections, models
from django.db.models import Func, Max, Sum, TextField, Value

from .models import Book
from .settings import AUTHORS, BOOKS, CONCURRENT_TASKS, NAP_SECONDS


def book_pk(i: int) -> int:
    return (i * 7919) % BOOKS + 1  # spread over the table, never the same row twice in a row


def author_pk(i: int) -> int:
    return (i * 37) % AUTHORS + 1


def nap() -> Func:
    """``pg_sleep(0.005)``: the server-side wait of one concurrent request."""
    return Func(Value(NAP_SECONDS), function="pg_sleep", output_field=TextField())


def by_author(manager: models.Manager, i: int) -> models.QuerySet:
    return manager.filter(author_id=author_pk(i))


# -- the systems -------------------------------------------------------------------------------
# Each has a method per workload taking an index i; the async ones are coroutine functions.
# `request` is one request of the concurrent workload: get by pk with a 5 ms pg_sleep.


class DjangoSync:
    name = "django sync"
    is_async = False

    def get(self, i: int) -> Any:
        return Book.objects.get(pk=book_pk(i))

    def filter(self, i: int) -> Any:
        return list(by_author(Book.objects, i))

    def values(self, i: int) -> Any:
        return list(by_author(Book.objects, i).values_list("id", "title", "price"))

    def join(self, i: int) -> Any:
        return list(by_author(Book.objects, i).select_related("author")[:50])

    def count(self, i: int) -> Any:
        qs = by_author(Book.objects, i)
        return qs.count(), qs.aggregate(total=Sum("price"), latest=Max("published"))

    def request(self, i: int) -> Any:
        return Book.objects.annotate(nap=nap()).get(pk=book_pk(i))


class VinylSync(DjangoSync):
    """vinyl in sync mode: ``Book.vinyl`` on Django's own connection."""

    name = "vinyl sync"

    def get(self, i: int) -> Any:
        return Book.vinyl.get(pk=book_pk(i))

    def filter(self, i: int) -> Any:
        return list(by_author(Book.vinyl, i))

    def values(self, i: int) -> Any:
        return list(by_author(Book.vinyl, i).values_list("id", "title", "price"))

    def join(self, i: int) -> Any:
        return list(by_author(Book.vinyl, i).select_related("author")[:50])

    def count(self, i: int) -> Any:
        qs = by_author(Book.vinyl, i)
        return qs.count(), qs.aggregate(total=Sum("price"), latest=Max("published"))

    def request(self, i: int) -> Any:
        return Book.vinyl.annotate(nap=nap()).get(pk=book_pk(i))


class VinylAsync:
    """vinyl in async mode: ``await Book.vinyl...`` on its pool of async connections."""

    name = "vinyl async"
    is_async = True

    async def get(self, i: int) -> Any:
        return await Book.vinyl.get(pk=book_pk(i))

    async def filter(self, i: int) -> Any:
        return await by_author(Book.vinyl, i)

    async def values(self, i: int) -> Any:
        return await by_author(Book.vinyl, i).values_list("id", "title", "price")

    async def join(self, i: int) -> Any:
        return await by_author(Book.vinyl, i).select_related("author")[:50]

    async def count(self, i: int) -> Any:
        qs = by_author(Book.vinyl, i)
        return (
            await qs.count(),
            await qs.aggregate(total=Sum("price"), latest=Max("published")),
        )

    async def request(self, i: int) -> Any:
        return await Book.vinyl.annotate(nap=nap()).get(pk=book_pk(i))


class WithoutQueryCache:
    """A vinyl system with its structural query cache switched off (``query_cache_disabled()``)."""

    def __init__(self, system: Any) -> None:
        self.system = system
        self.name = f"{system.name} nc"
        self.is_async = system.is_async

    def __getattr__(self, workload: str) -> Any:
        from vinyl import query_cache_disabled

        op = getattr(self.system, workload)
        if self.is_async:

            async def run(i: int) -> Any:
                with query_cache_disabled():
                    return await op(i)

        else:

            def run(i: int) -> Any:
                with query_cache_disabled():
                    return op(i)

        setattr(self, workload, run)  # once per workload
        return run


class DjangoAsync:
    """Django's a-methods (``aget``, ``acount`` …, ``async for``): the sync ORM in a thread."""

    name = "django async"
    is_async = True

    async def get(self, i: int) -> Any:
        return await Book.objects.aget(pk=book_pk(i))

    async def filter(self, i: int) -> Any:
        return [b async for b in by_author(Book.objects, i)]

    async def values(self, i: int) -> Any:
        return [r async for r in by_author(Book.objects, i).values_list("id", "title", "price")]

    async def join(self, i: int) -> Any:
        return [b async for b in by_author(Book.objects, i).select_related("author")[:50]]

    async def count(self, i: int) -> Any:
        qs = by_author(Book.objects, i)
        return (
            await qs.acount(),
            await qs.aaggregate(total=Sum("price"), latest=Max("published")),
        )

    async def request(self, i: int) -> Any:
        return await Book.objects.annotate(nap=nap()).aget(pk=book_pk(i))


BOOK_COLUMNS = "b.id, b.author_id, b.title, b.pages, b.price, b.published"
BY_AUTHOR = "FROM bench_book b WHERE b.author_id = %s"


class PsycopgAsync:
    """Hand-written SQL on a ``psycopg_pool.AsyncConnectionPool`` (psycopg's defaults)."""

    name = "psycopg async"
    is_async = True

    def __init__(self, pool: Any) -> None:
        self.pool = pool

    async def _all(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        async with self.pool.connection() as conn:
            cursor = await conn.execute(sql, params)
            return await cursor.fetchall()

    async def _one(self, sql: str, params: tuple[Any, ...]) -> Any:
        async with self.pool.connection() as conn:
            cursor = await conn.execute(sql, params)
            return await cursor.fetchone()

    async def get(self, i: int) -> Any:
        return await self._one(
            f"SELECT {BOOK_COLUMNS} FROM bench_book b WHERE b.id = %s LIMIT 21", (book_pk(i),)
        )

    async def filter(self, i: int) -> Any:
        return await self._all(f"SELECT {BOOK_COLUMNS} {BY_AUTHOR}", (author_pk(i),))

    async def values(self, i: int) -> Any:
        return await self._all(f"SELECT b.id, b.title, b.price {BY_AUTHOR}", (author_pk(i),))

    async def join(self, i: int) -> Any:
        return await self._all(
            f"SELECT {BOOK_COLUMNS}, a.id, a.name, a.born FROM bench_book b "
            "JOIN bench_author a ON a.id = b.author_id WHERE b.author_id = %s LIMIT 50",
            (author_pk(i),),
        )

    async def count(self, i: int) -> Any:
        n = await self._one(f"SELECT count(*) {BY_AUTHOR}", (author_pk(i),))
        agg = await self._one(f"SELECT sum(b.price), max(b.published) {BY_AUTHOR}", (author_pk(i),))
        return n[0], {"total": agg[0], "latest": agg[1]}

    async def request(self, i: int) -> Any:
        return await self._one(
            f"SELECT {BOOK_COLUMNS}, pg_sleep({NAP_SECONDS}) FROM bench_book b WHERE b.id = %s "
            "LIMIT 21",
            (book_pk(i),),
        )


# -- running a batch ---------------------------------------------------------------------------


class Crew:
    """Worker threads, each with its own Django connection: the sync side of concurrent I/O."""

    def __init__(self, size: int) -> None:
        self.jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.threads = [threading.Thread(target=self._work, daemon=True) for _ in range(size)]
        for thread in self.threads:
            thread.start()

    def _work(self) -> None:
        try:
            while (job := self.jobs.get()) is not None:
                func, arg, future = job
                try:
                    future.set_result(func(arg))
                except BaseException as exc:
                    future.set_exception(exc)
        finally:
            connections.close_all()

    def map(self, func: Callable[[int], Any], args: range) -> list[Any]:
        futures = []
        for arg in args:
            future: Future[Any] = Future()
            self.jobs.put((func, arg, future))
            futures.append(future)
        return [future.result() for future in futures]

    def close(self) -> None:
        for _ in self.threads:
            self.jobs.put(None)
        for thread in self.threads:
            thread.join()


def sync_batch(system: Any, workload: str, start: int, n: int, crew: Crew) -> None:
    if workload == "concurrent":
        for k in range(n):
            base = start + k * CONCURRENT_TASKS
            crew.map(system.request, range(base, base + CONCURRENT_TASKS))
        return
    op = getattr(system, workload)
    for i in range(start, start + n):
        op(i)


async def async_batch(system: Any, workload: str, start: int, n: int) -> None:
    if workload == "concurrent":
        for k in range(n):
            base = start + k * CONCURRENT_TASKS
            await asyncio.gather(*(system.request(i) for i in range(base, base + CONCURRENT_TASKS)))
        return
    op = getattr(system, workload)
    for i in range(start, start + n):
        await op(i)


def summary(workload: str, result: Any) -> Any:
    """What every system must agree on for one operation (a check that they do the same work)."""

    def ident(x: Any) -> Any:
        return x.pk if isinstance(x, models.Model) else x[0]

    if workload in ("get", "request"):
        return ident(result)
    if workload in ("filter", "values"):
        return sorted(ident(x) for x in result)
    if workload == "join":
        return sorted(
            (b.pk, b.author.name) if isinstance(b, models.Model) else (b[0], b[7]) for b in result
        )
    if workload == "count":
        return result
    raise ValueError(workload)
