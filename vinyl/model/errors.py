"""The errors of async mode's refusal to run a query implicitly.

:class:`ImplicitQueryError` names what to await instead; :class:`RelationNotLoaded` and
:class:`DeferredFieldNotLoaded` are its kinds for a relation and a deferred field.
"""

from __future__ import annotations

from django.core.exceptions import SynchronousOnlyOperation

__all__ = ["DeferredFieldNotLoaded", "ImplicitQueryError", "RelationNotLoaded"]


class ImplicitQueryError(RuntimeError, SynchronousOnlyOperation):
    """An unevaluated queryset or unloaded relation was used where async mode cannot wait.

    Also a ``SynchronousOnlyOperation``, the class Django raises for the same refusal, so code
    written against Django's querysets catches it (found by Django's own test suite).
    """


class RelationNotLoaded(ImplicitQueryError):
    """An unloaded relation was read in async mode, where a lazy query would block the loop."""


class DeferredFieldNotLoaded(ImplicitQueryError):
    """A deferred field (only()/defer()) was read in async mode before it was loaded."""
