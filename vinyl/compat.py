"""Django version differences, named, in one place; and the register of vinyl's copies of Django.

vinyl supports Django 5.2 and 6.1. Where they differ, vinyl's code reads one of the switches
below (as Django's own code reads ``connection.features``) instead of probing with ``hasattr``
where it stands. Each switch says which Django introduced the behaviour.

Some of vinyl mirrors Django's code: where a query sits between signals, savepoints or changes
to an instance, the function is copied as a ``@maybe_async`` generator (see
docs/architecture.md). Each copy is marked ``@mirrors("module:Qualified.name", ...)`` with the
Django functions it follows. ``tests/test_django_drift.py`` fingerprints those functions in the
installed Django and fails, naming the vinyl function to re-sync, when one changes.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import TypeVar

import django
from django.core import exceptions
from django.db import DatabaseError
from django.db.models import Model, QuerySet
from django.db.models.fields.related_descriptors import create_forward_many_to_many_manager

__all__ = [
    "AVOID_CLONING",
    "BULK_CREATE_ORDER_WITH_RESPECT_TO",
    "BULK_CREATE_SPLITS_OBJS",
    "FETCH_MODES",
    "FIELD_FETCH_BLOCKED",
    "FIRST_LAST_KEEP_CLEARED_ORDERING",
    "GENERIC_FOREIGN_KEY_DESCRIPTOR",
    "M2M_CHANGED_SENDS_RAW",
    "MIRRORS",
    "RETURNING_ON_SAVE",
    "mirrors",
    "not_updated_error",
]

_VERSION = django.VERSION[:2]


def _factory_defines(factory: Callable[..., object], name: str) -> bool:
    """Whether *factory* (a function that builds a class) defines a function called *name*."""
    codes = [factory.__code__]  # type: ignore[attr-defined]
    while codes:
        code = codes.pop()
        if code.co_name == name:
            return True
        codes.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
    return False


#: 6.1: ``QuerySet._avoid_cloning()`` lets Django's related managers change a queryset in place
#: (``_cloning_enabled``); 5.2 always clones.
AVOID_CLONING = hasattr(QuerySet, "_avoid_cloning")

#: 6.0: ``Model.save()`` gets back what an UPDATE changed through expressions and generated
#: fields, and what an INSERT computed from expressions (``Model._assign_returned_values``).
RETURNING_ON_SAVE = hasattr(Model, "_assign_returned_values")

#: 6.0: ``QuerySet._prepare_for_bulk_create()`` returns the objects split into (with pk, without
#: pk); 5.2 returns None and ``bulk_create`` splits them itself.
BULK_CREATE_SPLITS_OBJS = _VERSION >= (6, 0)

#: 6.1: ``bulk_create()`` fills in ``_order`` for ``Meta.order_with_respect_to``.
BULK_CREATE_ORDER_WITH_RESPECT_TO = hasattr(QuerySet, "_handle_order_with_respect_to")

#: 6.1: fetch modes (``QuerySet.fetch_mode()``, ``FieldFetchBlocked``): querysets, raw querysets
#: and the objects they create carry ``_fetch_mode``.
FETCH_MODES = hasattr(exceptions, "FieldFetchBlocked")

#: 6.1: ``first()``/``last()`` keep an ordering cleared by ``order_by()`` instead of ordering by pk.
FIRST_LAST_KEEP_CLEARED_ORDERING = _VERSION >= (6, 1)

#: 6.1 (with fetch modes): ``GenericForeignKey`` reads through a descriptor class of its own,
#: ``GenericForeignKeyDescriptor`` (``fetch_one``/``fetch_many``).
GENERIC_FOREIGN_KEY_DESCRIPTOR = FETCH_MODES

#: 6.1: many-to-many managers send ``m2m_changed`` with ``raw=False`` (from ``_add_base``).
M2M_CHANGED_SENDS_RAW = _factory_defines(create_forward_many_to_many_manager, "_add_base")


#: What Django 6.1 raises where a fetch mode forbids a lazy load (nothing to catch in 5.2).
FIELD_FETCH_BLOCKED: tuple[type[Exception], ...] = (
    (exceptions.FieldFetchBlocked,) if FETCH_MODES else ()
)


def not_updated_error(model: type) -> type[Exception]:
    """The error of a forced update that matched no row: 6.0's ``Model.NotUpdated``, or 5.2's
    ``DatabaseError``."""
    return getattr(model, "NotUpdated", DatabaseError)


F = TypeVar("F", bound=Callable[..., object])

#: vinyl function (``module.qualname``) → the Django functions it mirrors (``module:qualname``).
MIRRORS: dict[str, tuple[str, ...]] = {}


def mirrors(*django_functions: str) -> Callable[[F], F]:
    """Mark a vinyl function as a copy of *django_functions* (``"module:Class.method"``).

    A name inside a factory function reads as a path through it:
    ``"django.db.models.fields.related_descriptors:create_reverse_many_to_one_manager.
    RelatedManager.add"``. A function that one supported Django lacks is fingerprinted as absent.
    """

    def register(func: F) -> F:
        MIRRORS[f"{func.__module__}.{func.__qualname__}"] = django_functions
        return func

    return register
