"""Relations of vinyl models, fetched explicitly with ``obj.q`` in the current mode.

``obj.q.<relation>`` reads a relation in the current mode:

* forward foreign keys and one-to-ones (``book.q.author``) and reverse one-to-ones
  (``author.q.profile``) give a maybe-async object, fetched once with a VinylQuerySet and cached
  where Django caches it, so ``book.author`` works afterwards without a query;
* reverse foreign keys and many-to-manys (``author.q.books``, ``book.q.tags``) give a
  :class:`RelatedManager` whose querysets are VinylQuerySets (a prefetched relation is served from
  its cache, as Django's related managers do); its writes are vinyl.model.related_writes;
* anything else Django can resolve through a descriptor (a ``GenericForeignKey``) is read by
  running Django's descriptor through :func:`vinyl.compiler.replay.call_with_io`.

Implicit lazy loads are refused in async mode by the guarded descriptors (vinyl.model.guards).
``vinyl.relations`` is this module's public path.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.db.models.fields.related_descriptors import (
    ForwardManyToOneDescriptor,
    ReverseManyToOneDescriptor,
    ReverseOneToOneDescriptor,
)

from ..compat import FIELD_FETCH_BLOCKED, mirrors
from ..compiler.replay import _Installed, call_with_io
from ..compiler.tape import NeedsQuery, _tape
from ..flags import is_async
from ..futures import maybe_async
from .errors import DeferredFieldNotLoaded, RelationNotLoaded
from .guards import WouldQuery, probe
from .prefetch import prefetch_related_objects
from .queryset import VinylQuerySet, as_vinyl
from .related_writes import RelatedWrites

__all__ = [
    "DeferredFieldNotLoaded",
    "RelatedManager",
    "RelationNotLoaded",
    "Relations",
    "prefetch_related_objects",
    "prepare_related",
]


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
        # Private names and the related writes (methods of this class) are never the queryset's.
        if name.startswith("_") or name in _RELATED_WRITES:
            raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")
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
        with probe():
            return getattr(instance, name)
    except (WouldQuery, *FIELD_FETCH_BLOCKED):
        return _MISSING


@mirrors(
    "django.db.models.fields.related_descriptors:ForwardManyToOneDescriptor.__get__",
    "django.db.models.fields.related_descriptors:ForwardManyToOneDescriptor.fetch_one",
)
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


@mirrors(
    "django.db.models.fields.related_descriptors:ReverseOneToOneDescriptor.__get__",
    "django.db.models.fields.related_descriptors:ReverseOneToOneDescriptor.fetch_one",
)
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
