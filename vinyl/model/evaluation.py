"""How a lazy vinyl result is evaluated in each mode, and Django's a-methods done natively.

A class that mixes in :class:`Evaluation` defines ``_fetch()``, a maybe-async operation that
evaluates it once and returns its list of results; ``await obj`` (async mode), ``async for`` and
sync mode's ``yield obj`` inside ``@maybe_async`` code all go through it.
"""

from __future__ import annotations

from typing import Any

from ..flags import async_mode, is_async

__all__ = ["Evaluation", "native_a_method", "native_write_method"]


class Evaluation:
    """``await``, ``async for`` and sync resolution of a lazy result with a ``_fetch()``."""

    def _fetch(self) -> Any:  # pragma: no cover - defined by the classes that mix this in
        raise NotImplementedError

    def __await__(self):
        if not is_async():
            raise TypeError(
                f"A {type(self).__name__} was awaited in sync mode; in sync mode iterate it or "
                "call list(qs) instead (the mode is set by vinyl.set_async / sync_mode / "
                "async_mode)."
            )
        return self._fetch().__await__()

    def __vinyl_resolve__(self) -> list[Any]:
        return self._fetch()

    def __aiter__(self):
        return self._aiter()

    async def _aiter(self):
        for obj in await self._fetch():
            yield obj


def native_a_method(name: str, alters_data: bool = False) -> Any:
    """Return Django's ``a<name>`` method done natively: ``await self.<name>(...)`` in async mode.

    Django's a-methods run the sync ORM in a worker thread; these run on vinyl's async
    connection (and inside an async ``atomic()`` block's transaction).
    """

    async def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        with async_mode():
            return await getattr(self, name)(*args, **kwargs)

    method.__name__ = method.__qualname__ = f"a{name}"
    method.__doc__ = (
        f"Return ``await qs.{name}(...)`` run in async mode: Django's a-method, but on vinyl's "
        "async connection instead of the sync ORM in a worker thread."
    )
    if alters_data:
        method.alters_data = True  # type: ignore[attr-defined]
    return method


def native_write_method(name: str) -> Any:
    """Return Django's ``a<name>`` of a write method done natively (see native_a_method)."""
    return native_a_method(name, alters_data=True)
