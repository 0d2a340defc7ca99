"""The mode flag: decides whether vinyl operations run eagerly (sync) or return coroutines (async).

The flag lives in a :class:`contextvars.ContextVar`, so it is visible to the current thread or task
and to whatever it spawns afterwards, and to nothing else. Unset, the mode is *auto*: async when an
event loop runs in the current thread, sync otherwise.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
from asyncio import _get_running_loop
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["set_async", "is_async", "sync_mode", "async_mode"]

F = TypeVar("F", bound=Callable[..., Any])

_mode: contextvars.ContextVar[bool | None] = contextvars.ContextVar("vinyl_async", default=None)


def set_async(value: bool | None) -> contextvars.Token[bool | None]:
    """Set the mode for the current context: True (async), False (sync) or None (auto).

    Return the token, which ``reset_async()`` accepts to restore the previous value.
    """
    if value is not None and not isinstance(value, bool):
        raise TypeError(f"set_async() takes True, False or None, not {value!r}")
    return _mode.set(value)


def reset_async(token: contextvars.Token[bool | None]) -> None:
    """Restore the mode that was in force before the ``set_async()`` that returned *token*."""
    _mode.reset(token)


def is_async() -> bool:
    """Return True if vinyl operations called now return awaitables."""
    value = _mode.get()
    if value is None:
        # asyncio's C-level accessor: no exception on the hot path when no loop runs.
        return _get_running_loop() is not None
    return value


class _ModeContext:
    """A context manager and decorator (of sync and async functions) that pins the mode."""

    def __init__(self, value: bool) -> None:
        self._value = value
        self._tokens: list[contextvars.Token[bool | None]] = []

    def __enter__(self) -> _ModeContext:
        self._tokens.append(_mode.set(self._value))
        return self

    def __exit__(self, *exc: object) -> None:
        _mode.reset(self._tokens.pop())

    def __call__(self, func: F) -> F:
        value = self._value
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                token = _mode.set(value)
                try:
                    return await func(*args, **kwargs)
                finally:
                    _mode.reset(token)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            token = _mode.set(value)
            try:
                return func(*args, **kwargs)
            finally:
                _mode.reset(token)

        return wrapper  # type: ignore[return-value]

    def __repr__(self) -> str:
        return "async_mode()" if self._value else "sync_mode()"


def sync_mode() -> _ModeContext:
    """Run the block (or the decorated function) in sync mode: operations return values."""
    return _ModeContext(False)


def async_mode() -> _ModeContext:
    """Run the block (or the decorated function) in async mode: operations return awaitables."""
    return _ModeContext(True)
