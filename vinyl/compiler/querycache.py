"""The structural query cache: repeated queryset shapes skip Django's building and compiling.

A VinylQuerySet made by a manager *records* its chain of calls (``filter``, ``exclude``,
``order_by``, ``values_list``, ``select_related``, slicing …) as a *shape* and a list of *slot
values*, in the manner of SQLAlchemy's cache keys: the shape describes the structure (method,
lookup paths, field names, and the kinds of the values: their types, ``None``, the length of a
list, booleans by value), and the values are left out of it, in order. A call whose arguments
cannot describe themselves (expressions, subqueries, custom objects …) leaves the chain
untracked: that queryset takes Django's normal path.

Once a shape has been built by Django without error, the next queryset of that shape is *lazy*:
its query is built only if something asks for it (``qs.query``, a method vinyl does not record).
At evaluation the cache key is (model, database alias, schema generation, active time zone, mode,
shape, terminal operation). On a miss, Django builds and compiles as always; the compiled
statement is then turned into a :class:`Template` only if it can be *verified* against the values
(see :func:`derive`). On a hit, each value is bound by constructing the lookup Django would have
built (``lookup_class(lhs, value)``, i.e. Django's own ``get_prep_lookup``) and compiling just
that lookup; its SQL fragment must equal the template's, or the call falls back. Rows become
objects through Django's own iterables, as on the normal path.

Everything not covered falls back to the normal path and is counted (:func:`query_cache_info`).
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import decimal
import threading
import uuid
import warnings
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

from django.conf import settings
from django.core.exceptions import EmptyResultSet, FullResultSet
from django.core.signals import setting_changed
from django.db.models import Field, Model, Q, lookups, sql
from django.db.models.expressions import Col
from django.db.models.fields import related_lookups
from django.db.models.lookups import Lookup
from django.db.models.query import QuerySet
from django.db.models.signals import class_prepared, post_migrate
from django.db.models.sql.where import WhereNode
from django.utils import timezone

from ..compat import AVOID_CLONING, mirrors
from ..db.wrapper import sql_connection
from ..flags import is_async
from ..futures import maybe_async

__all__ = ["query_cache_info", "query_cache_disabled", "clear_query_cache", "CachedChain"]

DEFAULT_SIZE = 1000

# -- switch, size, counters ---------------------------------------------------------------------

_disabled: contextvars.ContextVar[bool] = contextvars.ContextVar("vinyl_cache_off", default=False)
# What vinyl_execute_sql() compiled while a miss runs (see vinyl.compiler).
capturing: contextvars.ContextVar[list[Any] | None] = contextvars.ContextVar(
    "vinyl_cache_capture", default=None
)


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.entries: OrderedDict[Any, Any] = OrderedDict()
        # (model, shape) -> the queryset attributes the steps set (_STEP_ATTRS); facts of shapes
        self.known: dict[Any, Any] = {}
        self.hits = 0
        self.misses = 0
        self.fallbacks: Counter[str] = Counter()
        self.generation = 0
        self._config: tuple[bool, int] | None = None

    def config(self) -> tuple[bool, int]:
        config = self._config
        if config is None:
            size = getattr(settings, "VINYL_QUERY_CACHE_SIZE", DEFAULT_SIZE)
            enabled = bool(getattr(settings, "VINYL_QUERY_CACHE", True)) and size > 0
            config = self._config = (enabled, int(size))
        return config

    def reset(self, **_: Any) -> None:
        """Forget every template: the schema, the models or the settings may have changed."""
        with self.lock:
            self.entries.clear()
            self.known.clear()
            self.generation += 1
            self._config = None


_state = _State()
for _signal in (post_migrate, class_prepared, setting_changed):
    _signal.connect(_state.reset, dispatch_uid=f"vinyl.querycache.{_signal!r}", weak=False)


def query_cache_info() -> dict[str, Any]:
    """Return the structural cache's counters: hits, misses, fallbacks by reason, size, maxsize."""
    enabled, size = _state.config()
    return {
        "enabled": enabled,
        "hits": _state.hits,
        "misses": _state.misses,
        "fallbacks": dict(_state.fallbacks.most_common()),
        "size": sum(1 for e in list(_state.entries.values()) if isinstance(e, Template)),
        "maxsize": size,
    }


def clear_query_cache(counters: bool = True) -> None:
    """Drop every template (and, by default, zero the counters)."""
    with _state.lock:
        _state.entries.clear()
    if counters:
        _state.hits = _state.misses = 0
        _state.fallbacks.clear()


@contextlib.contextmanager
def query_cache_disabled() -> Iterator[None]:
    """Within the block (this task or thread only), queries take Django's normal path."""
    token = _disabled.set(True)
    try:
        yield
    finally:
        _disabled.reset(token)


def _enabled() -> bool:
    return _state.config()[0] and not _disabled.get()


def _fallback(reason: str) -> None:
    _state.fallbacks[reason] += 1


# -- shapes -------------------------------------------------------------------------------------


class Untracked(Exception):
    """A call that cannot describe its structure: the queryset takes Django's normal path."""


class Slots(list):
    """The values of a call, in order; ``keyed`` numbers those that are part of the key."""

    __slots__ = ("keyed",)

    def key(self) -> None:
        """Make the value just appended part of the key."""
        try:
            self.keyed.append(len(self) - 1)
        except AttributeError:
            self.keyed = [len(self) - 1]


# Values bound at execution, keyed by their type only.
_SCALARS = frozenset(
    {
        str,
        int,
        float,
        decimal.Decimal,
        datetime.date,
        datetime.datetime,
        datetime.time,
        datetime.timedelta,
        uuid.UUID,
        bytes,
        dict,
    }
)


def _value_shape(value: Any, values: Slots) -> Any:
    """Describe *value* in a shape, appending it to *values* when it is bound at execution."""
    kind = type(value)
    if value is None:
        return None  # exact=None becomes IS NULL: part of the structure, not a value
    if kind is bool:
        values.append(value)
        values.key()
        return ("bool", value)  # isnull=True/False and negated lookups differ in their SQL
    if kind in _SCALARS or isinstance(value, (Model, *_SCALARS)):  # str/int enums …
        values.append(value)
        return kind  # the exact type: Django prepares each type its own way
    if kind in (list, tuple):
        types = []
        for item in value:
            item_type = type(item)
            if not (item is None or isinstance(item, (Model, *_SCALARS))):
                raise Untracked("a list holding an expression or an object")
            types.append(item_type)
        values.append(value)  # (a copy made by filter(), see _copied)
        return (kind, len(value), frozenset(types))
    raise Untracked(
        "an expression value" if hasattr(value, "resolve_expression") else "a value of no kind"
    )


def _q_shape(q: Any, values: Slots) -> Any:
    if isinstance(q, Q):
        return (
            "Q",
            q.connector,
            q.negated,
            tuple(_q_shape(child, values) for child in q.children),
        )
    if isinstance(q, tuple) and len(q) == 2 and isinstance(q[0], str):
        return (q[0], _value_shape(q[1], values))
    raise Untracked("an expression filter")


def _names(args: tuple[Any, ...]) -> tuple[Any, ...]:
    if not all(isinstance(a, str) or a is None for a in args):
        raise Untracked("an expression argument")
    return args


# How _expr_key keys each class (computed once per class): "value" (the value itself), "repr"
# (float, Decimal and subclasses of the scalars: the value's repr tells 1.0 from 1.00, -0.0
# from 0.0), "seq", "q", "field", "expr", or the reason it cannot be keyed.
_EXPR_KINDS: dict[type, str] = {}
_NOT_KEYED = ("RawSQL", "Subquery", "Exists", "OuterRef", "ResolvedOuterRef")


def _expr_kind(cls: type) -> str:
    if cls in (str, int, bool, type(None)):
        kind = "value"
    elif issubclass(cls, (str, int, float, decimal.Decimal)):
        kind = "repr"
    elif issubclass(cls, (list, tuple)):
        kind = "seq"
    elif issubclass(cls, Q):
        kind = "q"
    elif not cls.__module__.startswith(("django.db.models.", "django.contrib.postgres.")):
        kind = "!a custom expression"
    elif cls.__name__ in _NOT_KEYED:
        kind = f"!{cls.__name__}"
    elif issubclass(cls, Field):
        kind = "field"  # an output_field
    else:
        kind = "expr"
    _EXPR_KINDS[cls] = kind
    return kind


def _expr_key(expr: Any) -> Any:
    """A strict key of an expression built only from Django's own classes, or Untracked."""
    cls = type(expr)
    kind = _EXPR_KINDS.get(cls) or _expr_kind(cls)
    if kind == "value":
        return (cls, expr)
    if kind == "expr":
        try:
            args, kwargs = expr._constructor_args
        except AttributeError:
            raise Untracked("an expression without constructor arguments") from None
        return (
            cls,
            tuple([_expr_key(a) for a in args]),
            tuple([(k, _expr_key(kwargs[k])) for k in sorted(kwargs)]) if kwargs else (),
        )
    if kind == "repr":
        return (cls, repr(expr))
    if kind == "seq":
        return (cls, tuple([_expr_key(e) for e in expr]))
    if kind == "q":
        return ("Q", expr.connector, expr.negated, tuple([_expr_key(c) for c in expr.children]))
    if kind == "field":
        name, path, fargs, fkwargs = expr.deconstruct()
        return (path, _expr_key(tuple(fargs)), _expr_key(tuple(sorted(fkwargs.items()))))
    raise Untracked(kind[1:])


# -- the recording queryset ---------------------------------------------------------------------


_PLAIN_CLASSES: dict[type, bool] = {}
# The queryset attributes (besides its query) that recorded steps set: a lazy step takes them
# from the first, built queryset of its shape.
_STEP_ATTRS = ("_iterable_class", "_fields", "_prefetch_related_lookups")


def _cloning(qs: Any) -> bool:
    """False inside Django 6.1's ``qs._avoid_cloning()`` (5.2 always clones)."""
    return not AVOID_CLONING or qs._cloning_enabled


class CachedChain:
    """Mixin of VinylQuerySet: records its chain of calls, and builds the query only on demand.

    ``_vinyl_shape`` is the recorded shape (None: untracked, Django's normal path), with
    ``_vinyl_values`` its slot values and ``_vinyl_steps`` the calls to replay. A lazy queryset
    (``_vinyl_lazy``) has applied only the first ``_vinyl_built`` steps to ``_query``.
    """

    _vinyl_shape: tuple[Any, ...] | None = None
    _vinyl_why = "a queryset vinyl did not record"
    _vinyl_values: tuple[Any, ...] = ()
    _vinyl_keyed: tuple[int, ...] = ()
    _vinyl_steps: tuple[Any, ...] = ()
    _vinyl_built = 0
    _vinyl_base: tuple[Any, ...] = ()
    _vinyl_lazy = False

    def _vinyl_track(self) -> None:
        """Make this (fresh, manager-made) queryset a recorded root."""
        cls = type(self)
        plain = _PLAIN_CLASSES.get(cls)
        if plain is None:
            # A lazy step skips these; a class that overrides them takes Django's path.
            plain = _PLAIN_CLASSES[cls] = all(
                getattr(cls, name) is getattr(base, name)
                for base, name in (
                    (QuerySet, "_filter_or_exclude"),
                    (QuerySet, "_filter_or_exclude_inplace"),
                    (QuerySet, "_chain"),
                    (CachedChain, "_clone"),
                )
            )
        if not plain:
            self._vinyl_why = "a queryset class that overrides Django's cloning or filtering"
        elif _enabled():  # (switched off, recording would only cost time)
            self._vinyl_shape = ()

    # The query, built when asked for. Whoever asks for it may change it in place
    # (``qs.query.clear_ordering()``, as Django's prefetching does), which the recorded shape
    # would not show: so the queryset stops being recorded, unless the reader is trusted.
    _vinyl_trusted = False

    @property
    def query(self) -> Any:
        if self._vinyl_shape is not None and not self._vinyl_trusted:
            self._vinyl_shape = None
            self._vinyl_why = "its query was used directly"
            if not self._vinyl_lazy:  # the query may be the base of lazy clones: give a copy
                self._query = QuerySet.query.fget(self).clone()
        return self._vinyl_query()

    def _vinyl_query(self) -> Any:
        """The query (built if lazy), for readers that never change it."""
        if self._vinyl_lazy:
            self._vinyl_build()
        return QuerySet.query.fget(self)

    @contextlib.contextmanager
    def _vinyl_reading(self) -> Iterator[None]:
        """Within the block, Django code that only reads ``self.query`` keeps it recorded."""
        trusted = self._vinyl_trusted
        self._vinyl_trusted = True
        try:
            yield
        finally:
            self._vinyl_trusted = trusted

    @query.setter
    def query(self, value: Any) -> None:
        self._vinyl_lazy = False
        self._vinyl_shape = None
        self._vinyl_why = "a query set from outside"
        QuerySet.query.fset(self, value)

    def _vinyl_build(self) -> None:
        qs = QuerySet.__new__(type(self))
        qs.__dict__.update(self.__dict__)
        qs._vinyl_lazy = False
        qs._vinyl_shape = None
        qs._result_cache = None
        qs._cloning_enabled = True  # never change the shared base query in place
        # A related manager's state for its own next filter (Django's _next_is_sticky(),
        # _defer_next_filter) is not the recorded steps': they are applied as recorded.
        qs._sticky_filter, qs._defer_next_filter, qs._deferred_filter = False, False, None
        for name, value in zip(_STEP_ATTRS, self._vinyl_base, strict=True):
            setattr(qs, name, value)
        for func, args, kwargs in self._vinyl_steps[self._vinyl_built :]:
            qs = func(qs, *args, **kwargs)
        self._query = qs._query
        self._vinyl_lazy = False
        self._vinyl_built = len(self._vinyl_steps)

    def _clone(self) -> Any:
        with self._vinyl_reading():  # QuerySet._clone copies self.query, never changes it
            clone = super()._clone()
        clone._vinyl_shape = None  # Django's own methods: untracked unless a step says so
        if self._vinyl_shape is None:
            clone._vinyl_why = self._vinyl_why
        return clone

    def _vinyl_step(self, func: Callable[..., Any], shape: Callable[[Slots], Any], *args, **kwargs):
        """Return ``func(self, *args, **kwargs)`` recorded; lazily when its shape is known.

        *func* is Django's own method (QuerySet.filter …); *shape* describes the call and puts
        its values in the Slots it is given, or raises Untracked.
        """
        if (
            self._vinyl_shape is None
            or self._sticky_filter
            or self._deferred_filter is not None
            or self._result_cache is not None
        ):
            return self._vinyl_untracked(func, args, kwargs, self._vinyl_why)
        values = Slots()
        try:
            step_shape = shape(values)
        except Untracked as exc:
            return self._vinyl_untracked(func, args, kwargs, str(exc))
        # A related manager defers its filter so that a queryset thrown away costs nothing; a
        # recorded step is built only when needed anyway.
        self._defer_next_filter = False
        new_shape = (*self._vinyl_shape, step_shape)
        steps = (*self._vinyl_steps, (func, args, kwargs))
        known = _state.known.get((self.model, new_shape))
        # With cloning disabled (Django's _avoid_cloning()), the step changes this queryset.
        in_place = AVOID_CLONING and not self._cloning_enabled
        if known is not None:
            if in_place:
                clone = self
            else:
                clone = QuerySet.__new__(type(self))
                clone.__dict__.update(self.__dict__)
                clone._hints = self._hints or {}  # as QuerySet._clone: an empty dict is not shared
                clone._result_cache = None
                clone._prefetch_done = False
            if not self._vinyl_lazy:  # what the steps not applied yet start from (_STEP_ATTRS)
                clone._vinyl_base = (
                    self._iterable_class,
                    self._fields,
                    self._prefetch_related_lookups,
                )
            clone._iterable_class, clone._fields, clone._prefetch_related_lookups = known
            clone._vinyl_lazy = True
        else:
            if in_place:  # its query may be the base of lazy clones: change a copy
                self._query = self._vinyl_query().clone()
            with self._vinyl_reading():  # Django's chain methods read self.query, then clone
                clone = func(self, *args, **kwargs)  # Django builds it (and raises its errors)
            if not isinstance(clone, CachedChain):
                return clone
            clone._vinyl_built = len(steps)
            if len(_state.known) > 10 * _state.config()[1]:
                _state.known.clear()
            _state.known[(self.model, new_shape)] = tuple(getattr(clone, n) for n in _STEP_ATTRS)
        offset = len(self._vinyl_values)
        keyed = getattr(values, "keyed", None)
        if keyed:
            clone._vinyl_keyed = (*self._vinyl_keyed, *(offset + i for i in keyed))
        else:
            clone._vinyl_keyed = self._vinyl_keyed
        clone._vinyl_values = (*self._vinyl_values, *values)
        clone._vinyl_shape = new_shape
        clone._vinyl_steps = steps
        return clone

    def _vinyl_untracked(self, func: Callable[..., Any], args: Any, kwargs: Any, why: str) -> Any:
        if not _cloning(self) and self._vinyl_shape is not None:
            # Django changes this queryset's query itself, and that query may be the base of
            # lazy clones: it changes a copy, and the queryset stops being recorded.
            self._query = self._vinyl_query().clone()
            self._vinyl_shape = None
            self._vinyl_why = why
        with self._vinyl_reading():  # Django's chain methods read self.query, then clone
            result = func(self, *args, **kwargs)
        if isinstance(result, CachedChain) and result._vinyl_shape is None:
            result._vinyl_why = why
        return result

    def filter(self, *args: Any, **kwargs: Any) -> Any:
        if self._vinyl_shape is not None:
            args, kwargs = _copied(args), {k: _copied(v) for k, v in kwargs.items()}
        return self._vinyl_step(
            QuerySet.filter, lambda v: _filter_shape("F", args, kwargs, v), *args, **kwargs
        )

    def exclude(self, *args: Any, **kwargs: Any) -> Any:
        if self._vinyl_shape is not None:
            args, kwargs = _copied(args), {k: _copied(v) for k, v in kwargs.items()}
        return self._vinyl_step(
            QuerySet.exclude, lambda v: _filter_shape("X", args, kwargs, v), *args, **kwargs
        )

    def order_by(self, *fields: Any) -> Any:
        return self._vinyl_step(QuerySet.order_by, lambda v: ("order_by", _names(fields)), *fields)

    def select_related(self, *fields: Any) -> Any:
        def shape(v: Slots) -> Any:
            if not fields:  # Django 6.1 warns of it (deprecated): each call goes to Django
                raise Untracked("select_related() with no fields")
            return ("sr", _names(fields))

        return self._vinyl_step(QuerySet.select_related, shape, *fields)

    def only(self, *fields: Any) -> Any:
        return self._vinyl_step(QuerySet.only, lambda v: ("only", _names(fields)), *fields)

    def defer(self, *fields: Any) -> Any:
        return self._vinyl_step(QuerySet.defer, lambda v: ("defer", _names(fields)), *fields)

    def prefetch_related(self, *lookups: Any) -> Any:
        def shape(v: Slots) -> Any:
            if not all(isinstance(lookup, str) or lookup is None for lookup in lookups):
                raise Untracked("prefetch_related() with Prefetch objects")
            return ("prefetch", lookups)

        return self._vinyl_step(QuerySet.prefetch_related, shape, *lookups)

    def distinct(self, *fields: Any) -> Any:
        def shape(v: Slots) -> Any:
            if fields:
                raise Untracked("distinct() on fields")
            return ("distinct",)

        return self._vinyl_step(QuerySet.distinct, shape, *fields)

    def reverse(self) -> Any:
        return self._vinyl_step(QuerySet.reverse, lambda v: ("reverse",))

    def all(self) -> Any:
        return self._vinyl_step(QuerySet.all, lambda v: ("all",))

    def using(self, alias: Any) -> Any:
        clone = self._vinyl_step(QuerySet.using, lambda v: ("using", _names((alias,))), alias)
        clone._db = alias  # (a lazy clone has not run QuerySet.using)
        return clone

    def values(self, *fields: Any, **expressions: Any) -> Any:
        def shape(v: Slots) -> Any:
            if expressions:
                raise Untracked("values() with expressions")
            return ("values", _names(fields))

        return self._vinyl_step(QuerySet.values, shape, *fields, **expressions)

    def values_list(self, *fields: Any, flat: bool = False, named: bool = False) -> Any:
        def shape(v: Slots) -> Any:
            if not fields:
                raise Untracked("values_list() without fields")
            return ("values_list", _names(fields), flat, named)

        return self._vinyl_step(QuerySet.values_list, shape, *fields, flat=flat, named=named)

    def annotate(self, *args: Any, **kwargs: Any) -> Any:
        def shape(v: Slots) -> Any:
            if args:
                raise Untracked("annotate() with positional expressions")
            return ("annotate", tuple((k, _expr_key(e)) for k, e in kwargs.items()))

        return self._vinyl_step(QuerySet.annotate, shape, *args, **kwargs)

    def __getitem__(self, k: Any) -> Any:
        if isinstance(k, slice) and k.step is None and self._result_cache is None:
            start, stop = k.start, k.stop
            if all(b is None or (type(b) is int and b >= 0) for b in (start, stop)):
                return self._vinyl_step(QuerySet.__getitem__, lambda v: ("slice", start, stop), k)
        return super().__getitem__(k)

    @property
    def ordered(self) -> bool:
        return self._vinyl_fact("ordered")

    def _vinyl_fact(self, name: str) -> Any:
        """A fact of the query that depends on the shape only, computed once per shape."""
        if not self._vinyl_lazy:
            return _fact(self, name)
        key = (self.model, self._vinyl_shape, name)
        try:
            return _state.known[key]
        except KeyError:
            value = _state.known[key] = _fact(self, name)
            return value

    @mirrors("django.db.models.query:QuerySet._check_ordering_first_last_queryset_aggregation")
    def _check_ordering_first_last_queryset_aggregation(self, method: str) -> None:
        if self._vinyl_shape is not None and not self._vinyl_fact("grouped"):
            return  # Django's check looks for a GROUP BY only
        super()._check_ordering_first_last_queryset_aggregation(method)

    def _vinyl_for_get(self, args: tuple[Any, ...], kwargs: dict[str, Any], limit: int) -> Any:
        """The queryset get() runs, as one recorded step: ``filter(*args, **kwargs)``, then
        ``order_by()`` unless sliced, and at most *limit* rows (see VinylQuerySet.get)."""
        sliced = self._vinyl_sliced()
        if self._vinyl_shape is not None:
            args, kwargs = _copied(args), {k: _copied(v) for k, v in kwargs.items()}
        return self._vinyl_step(
            _for_get,
            lambda v: ("get", sliced, limit, _filter_shape("F", args, kwargs, v)),
            sliced,
            limit,
            args,
            kwargs,
        )

    def _vinyl_limited(self, high: int) -> Any:
        """``clone.query.set_limits(high=high)`` of get(), as a recorded step."""
        if self._vinyl_shape is not None and not self._vinyl_sliced():
            return self[:high]
        return self._vinyl_step(_limited, lambda v: ("limit", high), high)

    def _vinyl_sliced(self) -> bool:
        return any(step[0] in ("slice", "limit") for step in self._vinyl_shape or ())

    @mirrors("django.db.models.query:QuerySet.earliest")
    def earliest(self, *fields: Any) -> Any:
        if self._vinyl_shape is not None and not self._vinyl_sliced():
            return self._earliest(*fields)  # QuerySet.earliest, without building the query
        return super().earliest(*fields)

    @mirrors("django.db.models.query:QuerySet.latest")
    def latest(self, *fields: Any) -> Any:
        if self._vinyl_shape is not None and not self._vinyl_sliced():
            return self.reverse()._earliest(*fields)  # QuerySet.latest, without building it
        return super().latest(*fields)

    @mirrors("django.db.models.query:QuerySet._earliest")
    def _earliest(self, *fields: Any) -> Any:
        # QuerySet._earliest with recorded steps (its order_by, limit and get).
        order_by = fields or self.model._meta.get_latest_by
        if self._vinyl_shape is None or order_by is None:
            return super()._earliest(*fields)
        if not isinstance(order_by, (tuple, list)):
            order_by = (order_by,)
        return self.order_by(*order_by)._vinyl_limited(1).get()


@mirrors("django.db.models.query:QuerySet.get")
def _for_get(qs: Any, sliced: bool, limit: int, args: Any, kwargs: Any) -> Any:
    clone = QuerySet.filter(qs, *args, **kwargs)
    if sliced:
        return _limited(clone, limit)
    return QuerySet.__getitem__(QuerySet.order_by(clone), slice(None, limit))


def _limited(qs: Any, high: int) -> Any:
    clone = qs._chain()
    clone.query.set_limits(high=high)
    return clone


def _fact(qs: Any, name: str) -> Any:
    if name == "ordered":
        with qs._vinyl_reading():
            return QuerySet.ordered.fget(qs)
    if name == "grouped":
        return isinstance(qs._vinyl_query().group_by, tuple)
    return getattr(qs._vinyl_query(), name)


@mirrors("django.db.models.sql.query:Query.resolve_lookup_value")
def _copied(value: Any) -> Any:
    """*value* with its lists copied: Django copies them when it filters, a lazy step later."""
    if type(value) in (list, tuple):
        return type(value)(_copied(v) for v in value)
    if isinstance(value, Q):
        return Q.create([_copied(c) for c in value.children], value.connector, value.negated)
    return value


def _filter_shape(kind: str, args: tuple[Any, ...], kwargs: dict[str, Any], values: Slots):
    # Q(*args, **kwargs) sorts the keyword arguments; so do the shape and the values.
    parts = [_q_shape(a, values) for a in args]
    parts += [(k, _value_shape(v, values)) for k, v in sorted(kwargs.items())]
    return (kind, tuple(parts))


def recorded(queryset: Any, cls: type) -> Any:
    """A recorded *cls* queryset equal to *queryset*, a fresh Django one, or None.

    Django's related managers and relation descriptors hand out plain querysets on a fresh
    query (a related manager's filter deferred): those are recorded from the start, so
    ``author.q.books.filter(...)`` is cached like ``Book.vinyl.filter(...)``.
    """
    if (
        type(queryset) is not QuerySet
        or type(queryset._query) is not sql.Query
        or queryset._result_cache is not None
        or queryset._sticky_filter
        or queryset._defer_next_filter
        or queryset._prefetch_related_lookups
        or queryset._fields is not None
        or not _enabled()
        or vars(queryset._query) != vars(sql.Query(queryset.model))
    ):
        return None
    clone = cls(model=queryset.model, using=queryset._db, hints=queryset._hints)
    clone._for_write = queryset._for_write
    clone._known_related_objects = queryset._known_related_objects
    if hasattr(queryset, "_fetch_mode"):
        clone._fetch_mode = queryset._fetch_mode
    if queryset._deferred_filter is not None:
        negate, args, kwargs = queryset._deferred_filter
        clone = clone.exclude(*args, **kwargs) if negate else clone.filter(*args, **kwargs)
    return clone


# -- templates ----------------------------------------------------------------------------------


class Template:
    """A verified compiled statement and how to bind new values into it."""

    __slots__ = ("sql", "prefix", "leaves", "state", "query", "result_type")

    def __init__(self, sql, prefix, leaves, state, query, result_type) -> None:
        self.sql, self.prefix, self.leaves = sql, prefix, leaves
        self.state, self.query, self.result_type = state, query, result_type

    def compiler(self, alias: str) -> Any:
        compiler = object.__new__(self.state["__class__"])
        compiler.__dict__.update(self.state["__dict__"])
        compiler.connection = sql_connection(alias)
        compiler.using = alias
        compiler.quote_cache = dict(compiler.quote_cache)
        return compiler

    @mirrors("django.db.models.sql.query:Query.build_lookup")
    def bind(self, compiler: Any, values: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """The statement's parameters for *values*, or None when they would change its SQL."""
        params = list(self.prefix)
        connection = compiler.connection
        for lookup_class, lhs, fragment, slot, rhs_sql in self.leaves:
            lookup = lookup_class(lhs, values[slot])  # Django's own value preparation
            if lookup.rhs is None and not lookup.can_use_none_as_rhs:
                return None  # Django would build IS NULL
            try:
                if rhs_sql is not None and type(lookup.rhs) is not bool:
                    # A plain lookup (see _plain_rhs): its SQL is the column's, fixed, and the
                    # right-hand side's, which must not change; its parameters are the rhs's.
                    sql, lookup_params = lookup.process_rhs(compiler, connection)
                    if sql != rhs_sql:
                        return None
                else:
                    sql, lookup_params = compiler.compile(lookup)
                    if sql != fragment:
                        return None
            except (EmptyResultSet, FullResultSet):
                return None
            params.extend(lookup_params)
        return tuple(params)  # as Django's as_sql() returns them

    def view(self, qs: Any) -> Any:
        """A copy of *qs* that Django's iterables can read, with this template's query."""
        view = QuerySet.__new__(type(qs))
        view.__dict__.update(qs.__dict__)
        query = object.__new__(type(self.query))
        query.__dict__.update(self.query.__dict__)
        view._query = query
        view._vinyl_lazy = False
        view._vinyl_shape = None  # a throwaway: Django's iterables read view.query freely
        return view


class NotCacheable(Exception):
    """The compiled statement cannot be verified against its values."""

    def __init__(self, reason: str, lasting: bool = True) -> None:
        super().__init__(reason)
        self.reason, self.lasting = reason, lasting


# The lookups whose SQL is "<column> <operator> <rhs>" with the column's SQL fixed by the lookup
# class and the column: Django's own as_sql()/process_lhs() of its built-in lookups.
_PLAIN_AS_SQL = frozenset(
    {
        lookups.BuiltinLookup.as_sql,
        lookups.Exact.as_sql,
        lookups.In.as_sql,
        related_lookups.RelatedLookupMixin.as_sql,
        related_lookups.RelatedIn.as_sql,
    }
)
_PLAIN_PROCESS_LHS = frozenset({lookups.Lookup.process_lhs, lookups.BuiltinLookup.process_lhs})


def _plain_rhs(compiler: Any, leaf: Any, leaf_params: Any) -> str | None:
    """The rhs SQL of *leaf* when binding it needs only its ``process_rhs()``, else None.

    True of Django's built-in lookups on a plain column with a plain value, when the leaf's
    parameters are exactly its rhs's: then the lookup's SQL can change only through its rhs SQL
    (the number of placeholders of an ``__in``, say), which bind() compares.
    """
    cls = type(leaf)
    if (
        type(leaf.lhs) is not Col
        or leaf.bilateral_transforms
        or type(leaf.rhs) is bool
        or hasattr(leaf.rhs, "resolve_expression")
        or cls.as_sql not in _PLAIN_AS_SQL
        or cls.process_lhs not in _PLAIN_PROCESS_LHS
        or not cls.get_rhs_op.__module__.startswith("django.db.models.")
        or hasattr(leaf, "as_" + compiler.connection.vendor)
    ):
        return None
    try:
        rhs_sql, rhs_params = leaf.process_rhs(compiler, compiler.connection)
    except (EmptyResultSet, FullResultSet):
        return None
    return rhs_sql if _same(tuple(rhs_params), tuple(leaf_params)) else None


def _leaves(node: Any, out: list[Any]) -> list[Any]:
    for child in node.children:
        if isinstance(child, WhereNode):
            _leaves(child, out)
        elif isinstance(child, Lookup):
            out.append(child)
        else:
            raise NotCacheable(f"a {type(child).__name__} in WHERE")
    return out


def _same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if hasattr(a, "obj") and hasattr(a, "dumps"):  # psycopg's Json/Jsonb wrappers
        return _same(a.obj, b.obj) and a.dumps is b.dumps
    try:
        return bool(a == b)
    except Exception:
        return False


def _reproduces(compiler: Any, leaf: Any, value: Any, sql: str, params: Any) -> bool:
    # Django already warned (a naive datetime …) when it built the leaf; once per call, as in
    # Django. (catch_warnings is process-wide before Python 3.14; this runs once per key.)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            again_sql, again_params = compiler.compile(type(leaf)(leaf.lhs, value))
        except Exception:
            return False
    return again_sql == sql and _same(tuple(again_params), tuple(params))


def derive(
    compiler: Any, sql: str, params: Any, values: tuple[Any, ...], keyed: Any, result_type: Any
) -> Template:
    """Turn a compiled statement into a Template, or raise NotCacheable.

    The statement's parameters must be exactly the SELECT list's (constants: the shape keys
    every expression there strictly) followed by the WHERE clause's, and each WHERE leaf that has
    parameters must be reproduced exactly by building its lookup class on its left-hand side
    with the next slot value. So every parameter is accounted for, and bound the way Django
    binds it.
    """
    if compiler.connection.vendor != "postgresql":
        raise NotCacheable("not PostgreSQL")
    if type(compiler).__name__ != "SQLCompiler":
        raise NotCacheable(f"a {type(compiler).__name__} (a subquery or a write)")
    if getattr(compiler, "having", None) is not None or getattr(compiler, "qualify", None):
        raise NotCacheable("HAVING or QUALIFY")
    where = compiler.where
    leaves = _leaves(where, []) if where is not None else []
    try:
        where_params = tuple(compiler.compile(where)[1]) if where is not None else ()
    except FullResultSet:
        if leaves:
            raise NotCacheable("a WHERE that is always true") from None
        where_params = ()  # no WHERE at all
    except EmptyResultSet:
        raise NotCacheable("a WHERE that is always false") from None
    select_params = tuple(p for _, (_, ps), _ in compiler.select for p in ps)
    params = tuple(params)
    if len(params) != len(select_params) + len(where_params) or not all(
        _same(a, b) for a, b in zip(params, select_params + where_params, strict=True)
    ):
        raise NotCacheable("parameters outside SELECT and WHERE")
    keyed = set(keyed)
    bound: list[Any] = []
    rendered: list[tuple[int, Any]] = []
    produced: list[Any] = []
    slot = 0
    for leaf in leaves:
        try:
            leaf_sql, leaf_params = compiler.compile(leaf)
        except (EmptyResultSet, FullResultSet):
            raise NotCacheable("a WHERE leaf that is always true or false") from None
        match = None
        for candidate in range(slot, len(values)):
            if _reproduces(compiler, leaf, values[candidate], leaf_sql, leaf_params):
                match = candidate
                break
            if candidate not in keyed:
                break  # only a boolean keyed by value may leave no leaf of its own
        if match is None:
            if leaf_params:
                raise NotCacheable("a WHERE parameter that is not a value of the call")
            continue  # a leaf without parameters (IS NOT NULL of a negated lookup …)
        rhs_sql = _plain_rhs(compiler, leaf, leaf_params)
        bound.append((type(leaf), leaf.lhs, leaf_sql, match, rhs_sql))
        if match not in keyed:
            rendered.append(tuple(leaf_params))
        produced.extend(leaf_params)
        slot = match + 1
    if any(i not in keyed for i in range(slot, len(values))):
        raise NotCacheable("a value of the call that is not in WHERE")
    if not _same(tuple(produced), where_params):
        raise NotCacheable("WHERE parameters out of order")
    for i, a in enumerate(rendered):
        for b in rendered[i + 1 :]:
            if _same(a, b):
                raise NotCacheable("equal values (cannot tell them apart)", lasting=False)
    state = {"__class__": type(compiler), "__dict__": dict(compiler.__dict__)}
    state["__dict__"].pop("vinyl_result", None)
    state["__dict__"]["vinyl_converters"] = {}  # shared by the template's compilers
    return Template(sql, select_params, tuple(bound), state, compiler.query, result_type)


# -- running ------------------------------------------------------------------------------------


def _key(qs: Any, terminal: Any) -> Any:
    return (
        qs.model,
        qs.db,
        _state.generation,
        getattr(timezone._active, "value", None),
        is_async(),
        qs._vinyl_shape,
        terminal,
    )


@maybe_async
def run(qs: Any, terminal: Any, miss: Callable[[], Any], finish: Callable[[Any, Any], Any]):
    """Return ``finish(compiler, raw result)`` from a template, or ``miss()``'s result.

    *miss* runs Django's normal path (it compiles once, through vinyl_execute_sql); *finish*
    turns what ``vinyl_execute_sql`` returned into the operation's result.
    """
    if not _enabled():
        return (yield miss())
    if qs._vinyl_shape is None:
        _fallback(qs._vinyl_why)
        return (yield miss())
    try:
        key = _key(qs, terminal)
        entry = _state.entries.get(key)
    except TypeError:  # an unhashable constant in an expression
        _fallback("an unhashable constant")
        return (yield miss())
    if isinstance(entry, Template):
        alias = key[1]
        compiler = entry.compiler(alias)
        params = entry.bind(compiler, qs._vinyl_values)
        if params is not None:
            _state.hits += 1
            with contextlib.suppress(KeyError):
                _state.entries.move_to_end(key)
            raw = yield compiler.vinyl_execute_sql(entry.result_type, compiled=(entry.sql, params))
            return finish(compiler, raw, entry)
        _fallback("values that change the SQL")
        return (yield miss())
    if entry is not None:
        _fallback(entry)
        return (yield miss())
    _state.misses += 1
    captured: list[Any] = []
    token = capturing.set(captured)
    try:
        result = yield miss()
    finally:
        capturing.reset(token)
    if len(captured) != 1:  # none (an always-empty WHERE: pk__in=[] …), or several
        _fallback("no single statement")
        return result
    compiler, sql, params, result_type = captured[0]
    try:
        template = derive(compiler, sql, params, qs._vinyl_values, qs._vinyl_keyed, result_type)
    except NotCacheable as exc:
        if exc.lasting:
            _store(key, exc.reason)
        return result
    template.query = template.query.clone()
    template.state["__dict__"]["query"] = template.query
    _store(key, template)
    return result


def _store(key: Any, entry: Any) -> None:
    entries = _state.entries
    with _state.lock:
        entries[key] = entry
        while len(entries) > _state.config()[1]:
            entries.popitem(last=False)


# -- the operations -----------------------------------------------------------------------------


@maybe_async
def _fetch_normally(qs: Any):
    compiler = qs._vinyl_query().get_compiler(using=qs.db)
    results = yield compiler.vinyl_execute_sql()
    with qs._vinyl_reading():  # Django's iterables
        return qs._objects_from(compiler, results)


def fetch(qs: Any) -> Any:
    """The objects (or values) of *qs*: maybe-async."""
    return run(
        qs,
        "fetch",
        lambda: _fetch_normally(qs),
        lambda compiler, raw, template: template.view(qs)._objects_from(compiler, raw),
    )


def count(qs: Any, miss: Callable[[], Any]) -> Any:
    return run(qs, "count", miss, lambda c, row, t: c.vinyl_aggregation(row)["__count"])


def exists(qs: Any, miss: Callable[[], Any]) -> Any:
    return run(qs, "exists", miss, lambda c, row, t: bool(row))


def aggregate(qs: Any, args: Any, kwargs: Any, miss: Callable[[], Any]) -> Any:
    try:
        terminal = ("aggregate", _expr_key(args), _expr_key(tuple(sorted(kwargs.items()))))
    except Untracked as exc:
        if _enabled():
            _fallback(str(exc))
        return miss()
    return run(qs, terminal, miss, lambda c, row, t: c.vinyl_aggregation(row))
