"""``prefetch_related_objects``: Django's, run in the current mode.

Sync mode calls Django's function. Async mode runs it once on a greenlet, its queries run
on the event loop (vinyl.compiler.replay).
VinylQuerySet uses it for ``prefetch_related`` (per chunk when streaming), and so do raw
querysets and ``obj.q``.
"""

from __future__ import annotations

from typing import Any

from django.db.models.query import prefetch_related_objects as _django_prefetch

from ..compiler.replay import call_with_io
from ..futures import ready

__all__ = ["prefetch_related_objects"]


def prefetch_related_objects(instances: Any, *lookups: Any) -> Any:
    """Run Django's ``prefetch_related_objects`` in the current mode (maybe-async; None)."""
    instances = list(instances)
    if not instances or not lookups:
        return ready(None)
    return call_with_io(lambda: _django_prefetch(instances, *lookups))
