"""The mode flag: decides whether vinyl operations run eagerly (sync) or return coroutines (async).

The flag lives in a :class:`contextvars.ContextVar`, so it is visible to the current thread or task
and to whatever copies its context afterwards (asyncio tasks, ``asyncio.to_thread``,
``contextvars.copy_context().run``), and to nothing else. A ``threading.Thread`` starts with an
empty context, so it sees the default. Unset, the mode is *auto*: async when an event loop runs in
the current thread, sync otherwise.

Prefer auto in code that may hand work to a thread: ``asyncio.to_thread`` and asgiref's
``sync_to_async`` copy the context into their worker thread, so an explicit ``set_async(True)``
follows the work there (where nothing awaits), while auto mode is sync in that thread.

This module imports one name from asyncio, the C-level ``_get_running_loop()`` (listed in
``asyncio.events.__all__`` for third-party loops): auto mode needs to know whether a loop runs in
this thread, and that accessor answers without raising. It does no I/O; the futures driver and the
connection layer remain the only places that await anything.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
from asyncio import _get_running_loop
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar, overload

__all__ = ["async_mode", "is_async", "reset_async", "set_async", "sync_mode"]

F = TypeVar("F", bound=Callable[..., Any])

_mode: contextvars.ContextVar[bool | None] = contextvars.ContextVar("vinyl_async", default=None)


class _Entered(NamedTuple):
    """One open ``with sync_mode()/async_mode()`` block of this context (a linked stack)."""

    owner: _ModeContext
    token: contextvars.Token[bool | None]
    outer: _Entered | None


# The stack of open blocks lives in the context, not on the context manager, so one instance can
# be entered by several tasks at once, and re-entered, and each exit restores its own context.
_entered: contextvars.ContextVar[_Entered | None] = contextvars.ContextVar(
    "vinyl_mode_blocks", default=None
)


def _check(value: object, where: str) -> None:
    if value is not None and not isinstance(value, bool):
        raise TypeError(f"{where} takes True, False or None, not {value!r}")


def set_async(value: bool | None) -> contextvars.Token[bool | None]:
    """Set the mode for the current context: True (async), False (sync) or None (auto).

    Return the token, which ``reset_async()`` accepts to restore the previous value.
    """
    _check(value, "set_async()")
    return _mode.set(value)


def reset_async(token: contextvars.Token[bool | None]) -> None:
    """Restore the mode that was in force before the ``set_async()`` that returned *token*."""
    _mode.reset(token)


def is_async() -> bool:
    """Return True if vinyl operations called now return awaitables."""
    value = _mode.get()
    if value is None:
        return _get_running_loop() is not None
    return value


class _ModeContext:
    """A context manager and decorator (of sync and async functions) that pins the mode."""

    __slots__ = ("_value",)

    def __init__(self, value: bool) -> None:
        self._value = value

    def __enter__(self) -> _ModeContext:
        token = _mode.set(self._value)
        _entered.set(_Entered(self, token, _entered.get()))
        return self

    def __exit__(self, *exc: object) -> None:
        top = _entered.get()
        if top is None or top.owner is not self:
            raise RuntimeError(
                f"{self!r} exited in a context where it was not the innermost open block; "
                "enter and exit it in the same task or thread, in nested order."
            )
        _entered.set(top.outer)
        _mode.reset(top.token)

    def __call__(self, func: F) -> F:
        if not callable(func):
            raise TypeError(
                f"{self!r} decorates a function, not {func!r}: use `with {self!r}:` for a block, "
                "or vinyl.set_async(True/False/None) to set the mode."
            )
        if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
            raise TypeError(
                f"{self!r} cannot decorate the generator function {func.__qualname__}: the mode "
                f"would not hold while it is iterated. Use `with {self!r}:` inside it instead."
            )
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


@overload
def sync_mode() -> _ModeContext: ...
@overload
def sync_mode(func: F) -> F: ...
def sync_mode(func: F | None = None) -> _ModeContext | F:
    """Run the block (or the decorated function) in sync mode: operations return values.

    Use ``with sync_mode():``, ``@sync_mode()`` or ``@sync_mode``.
    """
    block = _ModeContext(False)
    return block if func is None else block(func)


@overload
def async_mode() -> _ModeContext: ...
@overload
def async_mode(func: F) -> F: ...
def async_mode(func: F | None = None) -> _ModeContext | F:
    """Run the block (or the decorated function) in async mode: operations return awaitables.

    Use ``with async_mode():``, ``@async_mode()`` or ``@async_mode``. The block is only useful
    where something will await those awaitables: inside a coroutine, or around code that hands
    them to one.
    """
    block = _ModeContext(True)
    return block if func is None else block(func)
