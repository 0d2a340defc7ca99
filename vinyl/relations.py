"""Public path of the relation API (kept from before the layered packages): the errors of
implicit I/O in async mode, ``prepare_related`` and ``RelatedManager``; they live in
vinyl.model."""

from .model.errors import DeferredFieldNotLoaded, RelationNotLoaded
from .model.relations import RelatedManager, Relations, prepare_related

__all__ = [
    "DeferredFieldNotLoaded",
    "RelatedManager",
    "RelationNotLoaded",
    "Relations",
    "prepare_related",
]
