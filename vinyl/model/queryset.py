"""VinylQuerySet and VinylManager: Django's queryset API with I/O in the current mode.

A VinylQuerySet is a Django QuerySet whose evaluation and terminal methods follow the mode: sync
mode returns values, async mode returns awaitables. Chainable methods are Django's own and never
do I/O. Each terminal method is written once, as a ``@maybe_async`` generator, and mirrors the
Django method of the same name (its docstring says where it differs). The writes are a base
class of their own (vinyl.model.writes).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Generator, Iterator
from typing import TYPE_CHECKING, Any, Generic, Literal, Self, overload

from django.db import NotSupportedError, connections, models
from django.db.models.query import MAX_GET_RESULTS, QuerySet
from django.db.models.sql.constants import SINGLE
from typing_extensions import TypeVar

from ..compat import FETCH_MODES, FIRST_LAST_KEEP_CLEARED_ORDERING, mirrors
from ..compiler import querycache
from ..compiler.query import VinylQuery
from ..compiler.querycache import CachedChain
from ..compiler.replay import call_with_io
from ..compiler.tape import _tape
from ..db.wrapper import sql_connection
from ..flags import async_mode, is_async
from ..futures import maybe_async, ready
from .errors import ImplicitQueryError
from .evaluation import Evaluation, native_a_method
from .prefetch import prefetch_related_objects
from .raw import VinylRawQuerySet
from .streaming import stream
from .writes import M, QuerySetWrites

__all__ = ["VinylManager", "VinylQuerySet", "as_vinyl"]

#: What a queryset yields: model instances, or values() dicts and values_list() tuples.
R = TypeVar("R", default=M)
N = TypeVar("N", bound=models.Model)


class VinylQuerySet(Evaluation, QuerySetWrites[M], CachedChain, QuerySet, Generic[M, R]):
    """A QuerySet whose I/O runs in the current mode (see the module docstring).

    Generic over the model (``VinylQuerySet[Book]``) and what it yields (``R``: the model, or
    what ``values()``/``values_list()`` make of it). Type checkers see async mode's types: a
    universal method returns ``Awaitable[T]`` (``T`` itself in sync mode), an a-method ``T``.
    """

    model: type[M]

    if TYPE_CHECKING:  # Django's chainable methods and evaluation, as type checkers see them

        def all(self) -> Self: ...
        def filter(self, *args: Any, **kwargs: Any) -> Self: ...
        def exclude(self, *args: Any, **kwargs: Any) -> Self: ...
        def order_by(self, *field_names: Any) -> Self: ...
        def select_related(self, *fields: Any) -> Self: ...
        def prefetch_related(self, *lookups: Any) -> Self: ...
        def annotate(self, *args: Any, **kwargs: Any) -> Self: ...
        def alias(self, *args: Any, **kwargs: Any) -> Self: ...
        def only(self, *fields: Any) -> Self: ...
        def defer(self, *fields: Any) -> Self: ...
        def distinct(self, *field_names: Any) -> Self: ...
        def reverse(self) -> Self: ...
        def none(self) -> Self: ...
        def using(self, alias: str | None) -> Self: ...
        def select_for_update(self, *args: Any, **kwargs: Any) -> Self: ...
        def union(self, *other_qs: Any, all: bool = False) -> Self: ...
        def intersection(self, *other_qs: Any) -> Self: ...
        def difference(self, *other_qs: Any) -> Self: ...
        def values(self, *fields: Any, **expressions: Any) -> VinylQuerySet[M, dict[str, Any]]: ...
        @overload
        def values_list(
            self, *fields: Any, flat: Literal[False] = ..., named: Literal[False] = ...
        ) -> VinylQuerySet[M, tuple[Any, ...]]: ...
        @overload
        def values_list(
            self, *fields: Any, flat: bool = ..., named: bool = ...
        ) -> VinylQuerySet[M, Any]: ...
        def earliest(self, *fields: Any) -> Awaitable[M]: ...
        def latest(self, *fields: Any) -> Awaitable[M]: ...
        def __await__(self) -> Generator[Any, None, list[R]]: ...
        def __aiter__(self) -> AsyncIterator[R]: ...
        def __iter__(self) -> Iterator[R]: ...
        @overload
        def __getitem__(self, k: int) -> R: ...
        @overload
        def __getitem__(self, k: slice) -> Self: ...
        async def aget(self, *args: Any, **kwargs: Any) -> M: ...
        async def afirst(self) -> M | None: ...
        async def alast(self) -> M | None: ...
        async def aearliest(self, *fields: Any) -> M: ...
        async def alatest(self, *fields: Any) -> M: ...
        async def acount(self) -> int: ...
        async def aexists(self) -> bool: ...
        async def acontains(self, obj: models.Model) -> bool: ...
        async def aaggregate(self, *args: Any, **kwargs: Any) -> dict[str, Any]: ...
        async def ain_bulk(
            self, id_list: Any = None, *, field_name: str = "pk"
        ) -> dict[Any, M]: ...
        async def aexplain(self, *, format: str | None = None, **options: Any) -> str: ...

    def __init__(self, model=None, query=None, using=None, hints=None):
        super().__init__(model, query if query is not None else VinylQuery(model), using, hints)
        if query is None:
            self._vinyl_track()  # a manager's queryset: its calls are recorded (querycache)

    # -- evaluation -------------------------------------------------------------------------
    @maybe_async
    def _fetch(self):
        """Evaluate the queryset (once) and return its result cache."""
        if self._result_cache is None:
            self._result_cache = yield querycache.fetch(self)
        if self._prefetch_related_lookups and not self._prefetch_done:
            yield self._vinyl_prefetch()
        return self._result_cache

    def _objects_from(self, compiler: Any, results: Any) -> list[Any]:
        # Django's iterable classes turn rows into objects, values, tuples … exactly as for
        # Model.objects; they get the compiler that already ran the query.
        compiler.vinyl_result = results
        self.query.vinyl_compiler = compiler
        try:
            return list(self._iterable_class(self))
        finally:
            self.query.vinyl_compiler = None

    @maybe_async
    def _vinyl_prefetch(self):
        yield prefetch_related_objects(self._result_cache, *self._prefetch_related_lookups)
        self._prefetch_done = True

    def _fetch_all(self):
        # Django's own entry point: __iter__, __len__, __bool__, __getitem__ …
        if self._result_cache is not None and (
            self._prefetch_done or not self._prefetch_related_lookups
        ):
            return
        if not is_async():
            self._fetch()
        elif _tape.get() is not None:
            super()._fetch_all()  # inside a replayed Django function: its queries are taped
        else:
            raise ImplicitQueryError(
                f"This {self.model.__name__} queryset has not been evaluated, and async mode "
                "cannot run a query implicitly (len(), bool(), iteration, list() or indexing). "
                "Evaluate it first: `objs = await qs`, `async for obj in qs`, `await qs.first()`, "
                "`await qs.count()` or `await qs.exists()`."
            )

    def __repr__(self) -> str:
        # Django's repr runs the query; async mode cannot, and a repr must not raise.
        if self._result_cache is None and is_async() and _tape.get() is None:
            return f"<{type(self).__name__} of {self.model.__name__}: not evaluated, await it>"
        return super().__repr__()

    # -- terminal methods -------------------------------------------------------------------
    @mirrors("django.db.models.query:QuerySet.get")
    @maybe_async
    def get(self, *args: Any, **kwargs: Any) -> Generator[Any, Any, M]:
        """Return the single object matching the lookups, as ``QuerySet.get``."""
        recorded = self._vinyl_shape is not None  # then no combinator, no distinct on fields
        if not recorded and self.query.combinator and (args or kwargs):
            raise NotSupportedError(
                f"Calling QuerySet.get(...) with filters after {self.query.combinator}() is not "
                "supported."
            )
        limit = MAX_GET_RESULTS
        if recorded:
            clone = self._vinyl_for_get(args, kwargs, limit)
        else:
            clone = self._chain() if self.query.combinator else self.filter(*args, **kwargs)
            if self.query.can_filter() and not self.query.distinct_fields:
                clone = clone.order_by()
            limit = None
            if (
                not clone.query.select_for_update
                or sql_connection(clone.db).features.supports_select_for_update_with_limit
            ):
                limit = MAX_GET_RESULTS
                clone.query.set_limits(high=limit)
        objs = yield clone._fetch()
        num = len(objs)
        if num == 1:
            return objs[0]
        if not num:
            raise self.model.DoesNotExist(
                f"{self.model._meta.object_name} matching query does not exist."
            )
        raise self.model.MultipleObjectsReturned(
            "get() returned more than one {} -- it returned {}!".format(
                self.model._meta.object_name,
                num if not limit or num < limit else f"more than {limit - 1}",
            )
        )

    @mirrors("django.db.models.query:QuerySet.first")
    @maybe_async
    def first(self) -> Generator[Any, Any, M | None]:
        """Return the first object (ordering by pk if unordered), or None."""
        if self._keeps_order():
            queryset = self
        else:
            self._check_ordering_first_last_queryset_aggregation(method="first")
            queryset = self.order_by("pk")
        head = queryset[:1]  # a list if the queryset was already evaluated, as in Django
        objs = head if isinstance(head, list) else (yield head._fetch())
        return objs[0] if objs else None

    @mirrors("django.db.models.query:QuerySet.last")
    @maybe_async
    def last(self) -> Generator[Any, Any, M | None]:
        """Return the last object (ordering by pk if unordered), or None."""
        if self._keeps_order():
            queryset = self.reverse()
        else:
            self._check_ordering_first_last_queryset_aggregation(method="last")
            queryset = self.order_by("-pk")
        objs = yield queryset[:1]._fetch()
        return objs[0] if objs else None

    def _keeps_order(self) -> bool:
        return self.ordered or (
            FIRST_LAST_KEEP_CLEARED_ORDERING and not self._vinyl_fact("default_ordering")
        )

    def count(self) -> Awaitable[int]:
        """Return the number of rows (``len()`` of the cache if already evaluated)."""
        if self._result_cache is not None:
            return ready(len(self._result_cache))
        return querycache.count(
            self,
            lambda: call_with_io(
                lambda: self._vinyl_query().get_count(using=self.db),  # it works on a clone
                finish=lambda compiler, row: compiler.vinyl_aggregation(row)["__count"],
            ),
        )

    @mirrors("django.db.models.query:QuerySet.exists")
    @maybe_async
    def exists(self) -> Generator[Any, Any, bool]:
        """Return True if the queryset contains any result."""
        if self._result_cache is not None:
            return bool(self._result_cache)
        return (yield querycache.exists(self, self._exists_miss))

    @maybe_async
    def _exists_miss(self):
        query = self._vinyl_query().exists()
        row = yield query.get_compiler(using=self.db).vinyl_execute_sql(SINGLE)
        return bool(row)

    def contains(self, obj: models.Model) -> Awaitable[bool]:
        """Return True if the queryset contains *obj* (Django's checks and semantics)."""
        if self._result_cache is not None:
            return ready(QuerySet.contains(self, obj))
        return QuerySet.contains(self, obj)  # ends in self.filter(pk=...).exists()

    def aggregate(self, *args: Any, **kwargs: Any) -> Awaitable[dict[str, Any]]:
        """Return a dict of aggregate values over the queryset, as ``QuerySet.aggregate``."""
        return querycache.aggregate(
            self,
            args,
            kwargs,
            lambda: call_with_io(
                lambda: QuerySet.aggregate(self, *args, **kwargs),  # it works on a clone
                finish=lambda compiler, row: compiler.vinyl_aggregation(row),
            ),
        )

    def in_bulk(self, id_list: Any = None, *, field_name: str = "pk") -> Awaitable[dict[Any, M]]:
        """Return a dict mapping *field_name* values to objects, as ``QuerySet.in_bulk``."""
        return call_with_io(lambda: QuerySet.in_bulk(self._chain(), id_list, field_name=field_name))

    def explain(self, *, format: str | None = None, **options: Any) -> Awaitable[str]:
        """Return the query plan as text, as ``QuerySet.explain``."""
        return call_with_io(lambda: QuerySet.explain(self._chain(), format=format, **options))

    @mirrors("django.db.models.query:QuerySet.iterator")
    def iterator(self, chunk_size: int | None = None) -> AsyncIterator[R]:
        """Stream the results through a server-side cursor, as ``QuerySet.iterator``.

        Sync mode returns a generator; async mode an async iterator (``async for``), which also
        works as ``async with`` and has ``aclose()`` (see vinyl.model.streaming). With
        prefetch_related, *chunk_size* is required and each chunk is prefetched, as in Django.
        """
        if chunk_size is None:
            if self._prefetch_related_lookups:
                raise ValueError(
                    "chunk_size must be provided when using QuerySet.iterator() after "
                    "prefetch_related()."
                )
        elif chunk_size <= 0:
            raise ValueError("Chunk size must be strictly positive.")
        server_side = not connections[self.db].settings_dict.get("DISABLE_SERVER_SIDE_CURSORS")
        return stream(self._chain(), chunk_size, server_side)

    async def aiterator(self, chunk_size: int = 2000) -> AsyncIterator[R]:
        """Yield the results of ``iterator(chunk_size)`` run in async mode (``async for``).

        Django's ``aiterator`` but on vinyl's async connection, not the sync ORM in a thread. As
        Django's, an async generator: its arguments are checked when iteration starts.
        """
        with async_mode():
            stream = self.iterator(chunk_size)
        async with stream:
            async for obj in stream:
                yield obj

    @mirrors("django.db.models.query:QuerySet.raw")
    def raw(
        self,
        raw_query: str,
        params: Any = (),
        translations: dict[str, str] | None = None,
        using: str | None = None,
    ) -> VinylRawQuerySet:
        """Return a VinylRawQuerySet, as ``QuerySet.raw``: ``await qs.raw(sql)`` in async mode."""
        kwargs = {"fetch_mode": self._fetch_mode} if FETCH_MODES else {}
        qs = VinylRawQuerySet(
            raw_query,
            model=self.model,
            params=params,
            translations=translations,
            using=using or self.db,
            **kwargs,
        )
        qs._prefetch_related_lookups = self._prefetch_related_lookups[:]
        return qs


# Django's a-methods of the read API, natively async (their sync twins follow the mode).
for _name in (
    "get", "first", "last", "earliest", "latest", "count", "exists", "contains", "aggregate",
    "in_bulk", "explain",
):  # fmt: skip
    setattr(VinylQuerySet, f"a{_name}", native_a_method(_name))


@mirrors("django.db.models.query:QuerySet._clone")
def as_vinyl(queryset: QuerySet) -> VinylQuerySet[Any]:
    """Return a VinylQuerySet equal to *queryset* (a Django QuerySet), keeping its state."""
    if isinstance(queryset, VinylQuerySet):
        return queryset
    if (recorded := querycache.recorded(queryset, VinylQuerySet)) is not None:
        return recorded
    clone = VinylQuerySet(
        model=queryset.model,
        query=queryset.query.chain(VinylQuery),
        using=queryset._db,
        hints=queryset._hints,
    )
    for attr in (
        "_sticky_filter",
        "_for_write",
        "_prefetch_related_lookups",
        "_known_related_objects",
        "_iterable_class",
        "_fields",
        "_fetch_mode",
        "_prefetch_done",
    ):
        if hasattr(queryset, attr):
            setattr(clone, attr, getattr(queryset, attr))
    if queryset._result_cache is not None:
        clone._result_cache = list(queryset._result_cache)
    return clone


if TYPE_CHECKING:  # a manager has its queryset's methods (Manager.from_queryset copies them)

    class _Manager(VinylQuerySet[M], models.Manager):  # type: ignore[misc]
        # A manager's chainable methods return a queryset, not the manager.
        def all(self) -> VinylQuerySet[M]: ...
        def filter(self, *args: Any, **kwargs: Any) -> VinylQuerySet[M]: ...
        def exclude(self, *args: Any, **kwargs: Any) -> VinylQuerySet[M]: ...
        def order_by(self, *field_names: Any) -> VinylQuerySet[M]: ...
        def select_related(self, *fields: Any) -> VinylQuerySet[M]: ...
        def prefetch_related(self, *lookups: Any) -> VinylQuerySet[M]: ...
        def annotate(self, *args: Any, **kwargs: Any) -> VinylQuerySet[M]: ...
        def alias(self, *args: Any, **kwargs: Any) -> VinylQuerySet[M]: ...
        def only(self, *fields: Any) -> VinylQuerySet[M]: ...
        def defer(self, *fields: Any) -> VinylQuerySet[M]: ...
        def distinct(self, *field_names: Any) -> VinylQuerySet[M]: ...
        def reverse(self) -> VinylQuerySet[M]: ...
        def none(self) -> VinylQuerySet[M]: ...
        def using(self, alias: str | None) -> VinylQuerySet[M]: ...
        def select_for_update(self, *args: Any, **kwargs: Any) -> VinylQuerySet[M]: ...
        def union(self, *other_qs: Any, all: bool = False) -> VinylQuerySet[M]: ...
        def intersection(self, *other_qs: Any) -> VinylQuerySet[M]: ...
        def difference(self, *other_qs: Any) -> VinylQuerySet[M]: ...

else:
    _Manager = models.Manager.from_queryset(VinylQuerySet)


class VinylManager(_Manager[M]):
    """A manager of VinylQuerySets; ``Model.vinyl(**fields)`` builds an unsaved instance.

    Generic over the model: ``Book.vinyl`` is a ``VinylManager[Book]`` to type checkers.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> M:
        return self.model(*args, **kwargs)

    if TYPE_CHECKING:  # Django puts a manager on the class through a descriptor

        def get_queryset(self) -> VinylQuerySet[M]: ...
        @overload
        def __get__(self, instance: None, owner: type[N]) -> VinylManager[N]: ...
        @overload
        def __get__(self, instance: N, owner: type[N]) -> VinylManager[N]: ...
        def __get__(self, instance: Any, owner: Any) -> Any: ...
