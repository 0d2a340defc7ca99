"""Guarded descriptors: a VinylModel's relations and deferred fields refuse lazy I/O in async mode.

For VinylModel subclasses (see vinyl.model.base), Django's relation and deferred-field
descriptors are replaced by subclasses that raise :class:`RelationNotLoaded` or
:class:`DeferredFieldNotLoaded` in async mode, where a lazy load would block the event loop.
Sync mode, and Django functions vinyl replays (see vinyl.compiler.replay), keep Django's lazy
loading. Only VinylModel classes are touched; Django itself is not patched. The to-many
accessors are replaced too, by the ones of vinyl.model.prefetch (they prefetch with recorded
querysets).

``obj.q`` probes a descriptor under :func:`probe` to learn whether reading it would query.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db.models.fields.related_descriptors import (
    ForeignKeyDeferredAttribute,
    ForwardManyToOneDescriptor,
    ForwardOneToOneDescriptor,
    ManyToManyDescriptor,
    ReverseManyToOneDescriptor,
    ReverseOneToOneDescriptor,
)
from django.db.models.query_utils import DeferredAttribute

from ..compat import GENERIC_FOREIGN_KEY_DESCRIPTOR
from ..compiler.tape import _tape
from ..flags import is_async
from .errors import DeferredFieldNotLoaded, RelationNotLoaded
from .prefetch import VinylManyToManyDescriptor, VinylReverseManyToOneDescriptor

__all__ = ["guard_descriptors"]


class WouldQuery(BaseException):
    """Raised by a guarded descriptor, while ``obj.q`` probes it, where Django would query.

    A BaseException, so that no ``except Exception`` in Django's code path swallows it.
    """


_probing: contextvars.ContextVar[bool] = contextvars.ContextVar("vinyl_probe", default=False)


@contextmanager
def probe() -> Iterator[None]:
    token = _probing.set(True)
    try:
        yield
    finally:
        _probing.reset(token)


def _lazy_io_refused() -> bool:
    """True where a descriptor must not query: async mode outside a replayed Django function."""
    if _probing.get():
        raise WouldQuery
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
    # Not guards: to-many managers refuse nothing (their querysets are lazy); these prefetch
    # with recorded querysets (see vinyl.model.prefetch).
    ReverseManyToOneDescriptor: VinylReverseManyToOneDescriptor,
    ManyToManyDescriptor: VinylManyToManyDescriptor,
}

GenericForeignKeyDescriptor: Any = None
if GENERIC_FOREIGN_KEY_DESCRIPTOR:
    try:
        from django.contrib.contenttypes.fields import GenericForeignKeyDescriptor
    except RuntimeError:  # pragma: no cover - django.contrib.contenttypes is not installed
        pass
if GenericForeignKeyDescriptor is not None:

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


def guard_descriptors(model: type) -> None:
    """Replace Django's querying descriptors on *model* (a VinylModel class) by the guarded ones."""
    for name, value in list(vars(model).items()):
        guarded = _GUARDED.get(type(value))
        if guarded is not None:
            replacement = object.__new__(guarded)
            replacement.__dict__.update(value.__dict__)  # keeps cached exception classes
            setattr(model, name, replacement)
