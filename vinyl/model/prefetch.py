"""``prefetch_related_objects``: Django's, run in the current mode.

Sync mode calls Django's function. Async mode replays it (vinyl.compiler.replay): every pass
starts from a snapshot of the instances' caches, so that each pass asks the same queries.
VinylQuerySet uses it for ``prefetch_related`` (per chunk when streaming), and so do raw
querysets and ``obj.q``.
"""

from __future__ import annotations

from typing import Any

from django.db.models.query import prefetch_related_objects as _django_prefetch

from ..compiler.replay import call_with_io
from ..flags import is_async

__all__ = ["prefetch_related_objects"]


class _Snapshot:
    """The caches of the model instances a prefetch may write to, to restore before each replay.

    Replaying Django's prefetch_related_objects() must ask the same queries on every pass, but a
    pass that stops at a query has already cached what it fetched before (a relation cache on
    the instances, a prefetched queryset …), and the next pass would take another path (another
    order of ids in a query, hence another query). Each pass starts from this snapshot instead.
    It covers the instances given and those already reachable from them (select_related,
    earlier prefetches); the objects a pass fetches are new on every pass.
    """

    def __init__(self, instances: Any) -> None:
        self.saved: list[tuple[Any, dict, dict]] = []
        seen: set[int] = set()
        todo = [obj for obj in instances if hasattr(obj, "_state")]
        while todo:
            obj = todo.pop()
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            state = obj._state
            self.saved.append((obj, self._copy(obj.__dict__), self._copy(state.__dict__)))
            for value in state.__dict__.get("fields_cache", {}).values():
                if hasattr(value, "_state"):
                    todo.append(value)
            for qs in obj.__dict__.get("_prefetched_objects_cache", {}).values():
                todo.extend(
                    o for o in (getattr(qs, "_result_cache", None) or ()) if hasattr(o, "_state")
                )

    @staticmethod
    def _copy(attrs: dict) -> dict:
        saved = dict(attrs)
        for key in ("fields_cache", "_prefetched_objects_cache"):  # dicts written in place
            if key in saved:
                saved[key] = dict(saved[key])
        return saved

    def restore(self) -> None:
        for obj, attrs, state in self.saved:
            obj.__dict__.clear()
            obj.__dict__.update(self._copy(attrs))
            obj._state.__dict__.clear()
            obj._state.__dict__.update(self._copy(state))


def prefetch_related_objects(instances: Any, *lookups: Any) -> Any:
    """Run Django's ``prefetch_related_objects`` in the current mode (maybe-async; None)."""
    instances = list(instances)
    if not is_async() or not instances or not lookups:
        return call_with_io(lambda: _django_prefetch(instances, *lookups))
    snapshot = _Snapshot(instances)

    def replayable() -> None:
        snapshot.restore()
        _django_prefetch(instances, *lookups)

    return call_with_io(replayable)
