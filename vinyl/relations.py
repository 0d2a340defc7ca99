"""Relations of vinyl models: explicit fetching with ``obj.q`` and no implicit I/O in async mode.

``obj.q.<relation>`` reads a relation in the current mode:

* forward foreign keys and one-to-ones (``book.q.author``) and reverse one-to-ones
  (``author.q.profile``) give a maybe-async object, fetched once with a VinylQuerySet and cached
  where Django caches it, so ``book.author`` works afterwards without a query;
* reverse foreign keys and many-to-manys (``author.q.books``, ``book.q.tags``) give a
  :class:`RelatedManager` whose querysets are VinylQuerySets (a prefetched relation is served from
  its cache, as Django's related managers do);
* anything else Django can resolve through a descriptor (a ``GenericForeignKey``) is read by
  running Django's descriptor through :func:`vinyl.replay.call_with_io`.

:func:`prefetch_related_objects` is Django's, run in the current mode (VinylQuerySet uses it for
``prefetch_related``, per chunk when streaming).

For VinylModel subclasses, Django's relation and deferred-field descriptors are replaced by
subclasses that refuse to query in async mode (:class:`RelationNotLoaded`,
:class:`DeferredFieldNotLoaded`): a lazy load there would block the event loop. Sync mode keeps
Django's lazy loading. Only VinylModel classes are touched; Django itself is not patched.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db.models.fields.related import lazy_related_operation
from django.db.models.fields.related_descriptors import (
    ForeignKeyDeferredAttribute,
    ForwardManyToOneDescriptor,
    ForwardOneToOneDescriptor,
    ReverseManyToOneDescriptor,
    ReverseOneToOneDescriptor,
)
from django.db.models.query import prefetch_related_objects as _django_prefetch
from django.db.models.query_utils import DeferredAttribute
from django.db.models.signals import class_prepared

from .flags import is_async
from .futures import maybe_async, ready
from .model import ImplicitQueryError, VinylModel, VinylQuerySet, as_vinyl
from .replay import NeedsQuery, _Installed, _tape, call_with_io
from .writes import RelatedWrites

try:  # Django >= 6.1: fetch modes
    from django.core.exceptions import FieldFetchBlocked
except ImportError:  # pragma: no cover - Django 5.2
    FieldFetchBlocked = None

__all__ = [
    "DeferredFieldNotLoaded",
    "RelatedManager",
    "RelationNotLoaded",
    "Relations",
    "prefetch_related_objects",
    "prepare_related",
]


class RelationNotLoaded(ImplicitQueryError):
    """An unloaded relation was read in async mode, where a lazy query would block the loop."""


class DeferredFieldNotLoaded(ImplicitQueryError):
    """A deferred field (only()/defer()) was read in async mode before it was loaded."""


# -- the guarded descriptors ---------------------------------------------------------------------


class _WouldQuery(BaseException):
    """Raised by a guarded descriptor, while ``obj.q`` probes it, where Django would query.

    A BaseException, so that no ``except Exception`` in Django's code path swallows it.
    """


_probing: contextvars.ContextVar[bool] = contextvars.ContextVar("vinyl_probe", default=False)


@contextmanager
def _probe() -> Iterator[None]:
    token = _probing.set(True)
    try:
        yield
    finally:
        _probing.reset(token)


def _lazy_io_refused() -> bool:
    """True where a descriptor must not query: async mode outside a replayed Django function."""
    if _probing.get():
        raise _WouldQuery
    return is_async() and _tape.get() is None


def _relation_error(model: type, name: str) -> RelationNotLoaded:
    var = model._meta.model_name
    return RelationNotLoaded(
        f"{model.__name__}.{name} is not loaded, and async mode cannot fetch it implicitly "
        f"(the query would block the event loop). Fetch it explicitly with "
        f"`await {var}.q.{name}`, or load it with the query: "
        f"{model.__name__}.vinyl.select_related({name!r}) or .prefetch_related({name!r})."
    )


class _GuardedForward:
    # Django calls get_queryset(instance=...) right before its lazy query (Django 5.2 and 6.1,
    # every fetch mode), and nowhere else outside prefetching, which vinyl replays.
    # (Django 5.2 takes **hints, 6.1 a keyword-only instance: accept both.)
    def get_queryset(self, **hints: Any) -> Any:
        if _lazy_io_refused():
            raise _relation_error(self.field.model, self.field.name)
        return super().get_queryset(**hints)


class VinylForwardManyToOneDescriptor(_GuardedForward, ForwardManyToOneDescriptor):
    """Django's forward many-to-one accessor that refuses to query in async mode."""


class VinylForwardOneToOneDescriptor(_GuardedForward, ForwardOneToOneDescriptor):
    """Django's forward one-to-one accessor that refuses to query in async mode."""


class VinylReverseOneToOneDescriptor(ReverseOneToOneDescriptor):
    """Django's reverse one-to-one accessor that refuses to query in async mode."""

    def get_queryset(self, **hints: Any) -> Any:
        if _lazy_io_refused():
            raise _relation_error(self.related.model, self.related.get_accessor_name())
        return super().get_queryset(**hints)


class _GuardedDeferred:
    def __get__(self, instance: Any, cls: Any = None) -> Any:
        if (
            instance is not None
            and self.field.attname not in instance.__dict__
            and instance._is_pk_set()
            and self._check_parent_chain(instance) is None
            and _lazy_io_refused()
        ):
            model = type(instance)
            raise DeferredFieldNotLoaded(
                f"{model.__name__}.{self.field.attname} was deferred (only()/defer()), and async "
                "mode cannot load it implicitly (the query would block the event loop). Select "
                f"it in the query (add {self.field.attname!r} to .only() or drop it from "
                f".defer()), or read it explicitly: `await {model.__name__}.vinyl.filter("
                f"pk=obj.pk).values_list({self.field.attname!r}, flat=True).get()`."
            )
        return super().__get__(instance, cls)


class VinylDeferredAttribute(_GuardedDeferred, DeferredAttribute):
    """Django's deferred-field accessor that refuses to query in async mode."""


class VinylForeignKeyDeferredAttribute(_GuardedDeferred, ForeignKeyDeferredAttribute):
    """Django's foreign key id accessor that refuses to query in async mode."""


_GUARDED: dict[type, type] = {
    ForwardManyToOneDescriptor: VinylForwardManyToOneDescriptor,
    ForwardOneToOneDescriptor: VinylForwardOneToOneDescriptor,
    ReverseOneToOneDescriptor: VinylReverseOneToOneDescriptor,
    DeferredAttribute: VinylDeferredAttribute,
    ForeignKeyDeferredAttribute: VinylForeignKeyDeferredAttribute,
}

try:  # Django >= 6.1 has a descriptor of its own for GenericForeignKey
    from django.contrib.contenttypes.fields import GenericForeignKeyDescriptor
except (ImportError, RuntimeError):  # pragma: no cover - Django 5.2 or no contenttypes
    GenericForeignKeyDescriptor = None
else:

    class VinylGenericForeignKeyDescriptor(GenericForeignKeyDescriptor):
        """Django's GenericForeignKey accessor that refuses to query in async mode."""

        def fetch_one(self, instance: Any) -> None:
            if _lazy_io_refused():
                raise _relation_error(type(instance), self.field.name)
            super().fetch_one(instance)

        def fetch_many(self, instances: Any) -> None:
            if _lazy_io_refused():
                raise _relation_error(type(instances[0]), self.field.name)
            super().fetch_many(instances)

    _GUARDED[GenericForeignKeyDescriptor] = VinylGenericForeignKeyDescriptor


def _guard(model: type) -> None:
    """Replace Django's querying descriptors on a VinylModel class by the guarded ones."""
    if not issubclass(model, VinylModel):
        return
    for name, value in list(vars(model).items()):
        guarded = _GUARDED.get(type(value))
        if guarded is not None:
            replacement = object.__new__(guarded)
            replacement.__dict__.update(value.__dict__)  # keeps cached exception classes
            setattr(model, name, replacement)


def _guard_models(*models: type) -> None:
    for model in models:
        _guard(model._meta.concrete_model)


def _on_class_prepared(sender: type, **kwargs: Any) -> None:
    _guard(sender)  # its own fields' descriptors exist already
    # Reverse accessors are set on the related model once both models are registered; these
    # operations are queued after Django's own, so they find the accessors in place.
    for field in (*sender._meta.local_fields, *sender._meta.local_many_to_many):
        remote = getattr(field, "remote_field", None)
        if remote is not None and getattr(remote, "model", None) is not None:
            lazy_related_operation(_guard_models, sender, remote.model)


class_prepared.connect(_on_class_prepared, dispatch_uid="vinyl.relations.guard")


# -- prefetch_related ------------------------------------------------------------------------------


def prefetch_related_objects(instances: Any, *lookups: Any) -> Any:
    """Run Django's ``prefetch_related_objects`` in the current mode (maybe-async; None)."""
    instances = list(instances)
    if not instances or not lookups:
        return ready(None)
    return call_with_io(lambda: _django_prefetch(instances, *lookups))


# -- obj.q -----------------------------------------------------------------------------------------

# Related-manager writes: Django's versions set the relation; the queryset's would not, so these
# names are never delegated to the queryset (vinyl's related writes define them on the class).
_RELATED_WRITES = frozenset(
    {"add", "create", "get_or_create", "update_or_create", "remove", "clear", "set"}
)


class RelatedManager(RelatedWrites):
    """``obj.q.<to-many relation>``: Django's related manager, read through VinylQuerySets.

    Queryset methods (``filter``, ``count``, ``first``, ``iterator`` …) act on
    :meth:`get_queryset`, which is Django's related-manager queryset as a VinylQuerySet (its
    cache when the relation was prefetched). The manager itself can be awaited, iterated with
    ``async for`` (or ``for`` in sync mode) like ``all()``. Django's related manager is
    :attr:`related`; related writes (``add``, ``create`` …) belong on this class.
    """

    __slots__ = ("related",)

    def __init__(self, related: Any) -> None:
        self.related = related

    @property
    def instance(self) -> Any:
        return self.related.instance

    @property
    def model(self) -> type:
        return self.related.model

    def get_queryset(self) -> VinylQuerySet:
        """Return the relation's queryset (the prefetched one if any) as a VinylQuerySet."""
        return as_vinyl(self.related.get_queryset())

    def all(self) -> VinylQuerySet:
        return self.get_queryset()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name in _RELATED_WRITES:
            raise AttributeError(
                f"{type(self).__name__} has no attribute {name!r}"
                + (
                    f": related writes are not available on obj.q yet; call {name}() on "
                    "Django's related manager in sync mode."
                    if name in _RELATED_WRITES
                    else ""
                )
            )
        return getattr(self.get_queryset(), name)

    def __await__(self) -> Any:
        return self.get_queryset().__await__()

    def __vinyl_resolve__(self) -> list[Any]:
        return self.get_queryset().__vinyl_resolve__()

    def __aiter__(self) -> Any:
        return self.get_queryset().__aiter__()

    def __iter__(self) -> Iterator[Any]:
        return iter(self.get_queryset())

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.instance!r}.q.{self.related.field.name}>"


_MISSING = object()


def _without_query(instance: Any, name: str) -> Any:
    """Return Django's value of ``instance.<name>`` if it needs no query, else ``_MISSING``."""
    try:
        with _probe():
            return getattr(instance, name)
    except _WouldQuery:
        return _MISSING
    except Exception as exc:
        if FieldFetchBlocked is not None and isinstance(exc, FieldFetchBlocked):
            return _MISSING
        raise


@maybe_async
def _fetch_forward(instance: Any, name: str, descriptor: Any):
    value = _without_query(instance, name)
    if value is not _MISSING:
        return value
    # What Django's fetch_one() does, with a VinylQuerySet.
    field = descriptor.field
    queryset = as_vinyl(ForwardManyToOneDescriptor.get_queryset(descriptor, instance=instance))
    obj = yield queryset.get(field.get_reverse_related_filter(instance))
    field.set_cached_value(instance, obj)
    if not field.remote_field.multiple:
        field.remote_field.set_cached_value(obj, instance)
    return obj


@maybe_async
def _fetch_reverse_one(instance: Any, name: str, descriptor: Any):
    value = _without_query(instance, name)
    if value is not _MISSING:
        return value
    related = descriptor.related
    queryset = as_vinyl(ReverseOneToOneDescriptor.get_queryset(descriptor, instance=instance))
    try:
        obj = yield queryset.get(**related.field.get_forward_related_filter(instance))
    except related.related_model.DoesNotExist:
        obj = None
    else:
        related.field.set_cached_value(obj, instance)
    related.set_cached_value(instance, obj)
    return getattr(instance, name)  # the object, or Django's RelatedObjectDoesNotExist


def _related_manager_now(instance: Any, name: str) -> Any:
    """Return Django's related manager; refuse in async mode if building it needs a query."""
    if not is_async():
        return getattr(instance, name)
    # A generic relation's manager looks its ContentType up when built: replay's first pass
    # tells whether that needs the database (a cold ContentType cache).
    token = _tape.set({})
    try:
        with _Installed():
            return getattr(instance, name)
    except NeedsQuery:
        pass
    finally:
        _tape.reset(token)
    model = type(instance)
    raise RelationNotLoaded(
        f"Building {model.__name__}.{name} needs a query first (e.g. its ContentType, not cached "
        "yet), and async mode cannot run it implicitly. Run those queries first with "
        f"`await vinyl.relations.prepare_related(obj, {name!r})`, then use obj.q.{name}."
    )


@maybe_async
def prepare_related(instance: Any, *names: str):
    """Do the queries that building ``instance.q.<name>`` needs, maybe-async; return None.

    A generic relation's manager looks its ContentType up when it is built; async mode cannot do
    that implicitly in ``obj.q.<name>``, so run this once (it fills Django's ContentType cache).
    """
    for name in names:
        _relation_descriptor(type(instance), name)
        yield call_with_io(lambda name=name: getattr(instance, name) and None)


_relations_cache: dict[type, dict[str, Any]] = {}


def _relations(model: type) -> dict[str, Any]:
    """Map each relation name of *model* to its class-level descriptor."""
    found = _relations_cache.get(model)
    if found is not None:
        return found
    found = {}
    for field in model._meta.get_fields():
        if not field.is_relation:
            continue
        name = field.name if not field.auto_created or field.concrete else None
        if name is None:
            name = field.get_accessor_name()
        if name and hasattr(model, name):
            found[name] = getattr(model, name)
    _relations_cache[model] = found
    return found


def _relation_descriptor(model: type, name: str) -> Any:
    descriptor = _relations(model).get(name) if not name.startswith("_") else None
    if descriptor is None:
        valid = ", ".join(sorted(_relations(model))) or "none"
        raise AttributeError(
            f"{model.__name__} has no relation {name!r} (obj.q.<relation>); its relations "
            f"are: {valid}."
        )
    return descriptor


class Relations:
    """``obj.q``: the relations of one model instance, read in the current mode."""

    __slots__ = ("_instance",)

    def __init__(self, instance: Any) -> None:
        self._instance = instance

    def __getattr__(self, name: str) -> Any:
        instance = self._instance
        model = type(instance)
        descriptor = _relation_descriptor(model, name)
        if isinstance(descriptor, ForwardManyToOneDescriptor):
            return _fetch_forward(instance, name, descriptor)
        if isinstance(descriptor, ReverseOneToOneDescriptor):
            return _fetch_reverse_one(instance, name, descriptor)
        if isinstance(descriptor, ReverseManyToOneDescriptor):  # reverse FK, M2M, generic
            return RelatedManager(_related_manager_now(instance, name))
        # GenericForeignKey & co.: Django's own descriptor, its queries run in the current mode.
        return call_with_io(lambda: getattr(instance, name))

    def __dir__(self) -> list[str]:
        return sorted(_relations(type(self._instance)))

    def __repr__(self) -> str:
        return f"<Relations of {self._instance!r}>"
