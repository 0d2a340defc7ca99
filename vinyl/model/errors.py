"""The errors of async mode's refusal to run a query implicitly.

:class:`ImplicitQueryError` names what to await instead; :class:`RelationNotLoaded` and
:class:`DeferredFieldNotLoaded` are its kinds for a relation and a deferred field.
"""

from __future__ import annotations

__all__ = ["DeferredFieldNotLoaded", "ImplicitQueryError", "RelationNotLoaded"]


class ImplicitQueryError(RuntimeError):
    """An unevaluated queryset or unloaded relation was used where async mode cannot wait."""


class RelationNotLoaded(ImplicitQueryError):
    """An unloaded relation was read in async mode, where a lazy query would block the loop."""


class DeferredFieldNotLoaded(ImplicitQueryError):
    """A deferred field (only()/defer()) was read in async mode before it was loaded."""
