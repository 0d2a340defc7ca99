"""VinylModel: an abstract model with ``Model.vinyl``, the instance API and ``obj.q``.

Every VinylModel subclass also gets guarded relation and deferred-field descriptors (see
vinyl.model.guards): the class_prepared receiver below is connected when this module is
imported, before any subclass can be defined.
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models.fields.related import lazy_related_operation
from django.db.models.signals import class_prepared

from .guards import guard_descriptors
from .instance import InstanceWrites
from .queryset import VinylManager
from .relations import Relations

__all__ = ["VinylModel"]


class VinylModel(InstanceWrites, models.Model):
    """An abstract model that adds ``vinyl = VinylManager()`` and the relation accessor ``q``."""

    vinyl = VinylManager()
    objects = models.Manager()

    class Meta:
        abstract = True

    @property
    def q(self) -> Relations:
        """This object's relations, fetched explicitly in the current mode.

        ``await book.q.author`` (cached on the object afterwards), ``author.q.books.filter(...)``
        (a related manager of VinylQuerySets); see vinyl.model.relations.
        """
        return Relations(self)


# -- the guarded descriptors of every VinylModel subclass ---------------------------------------


def _guard(model: type) -> None:
    if issubclass(model, VinylModel):
        guard_descriptors(model)


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
