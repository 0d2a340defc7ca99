"""Which async transaction each task holds: the pins of ``atomic()``, per database alias.

A contextvar maps an alias to the :class:`vinyl.db.transaction.Pin` of the task's open async
``atomic()`` block; tasks started inside the block inherit it. The connection layer reads it to
run a statement on the block's connection, and the compile-only wrapper to answer
``get_autocommit()``.
"""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .transaction import Pin

__all__ = ["current_pin", "pin_task", "unpin_task"]

_pins: contextvars.ContextVar[dict[str, Pin] | None] = contextvars.ContextVar(
    "vinyl_pins", default=None
)


def current_pin(alias: str) -> Pin | None:
    """Return the transaction pinned to the current task for *alias*, if any (async mode)."""
    pins = _pins.get()
    return None if pins is None else pins.get(alias)


def pin_task(alias: str, pin: Pin) -> contextvars.Token[dict[str, Pin] | None]:
    """Pin *pin* to the current task (and the tasks it starts) for *alias*; undo with the token."""
    return _pins.set({**(_pins.get() or {}), alias: pin})


def unpin_task(token: contextvars.Token[dict[str, Pin] | None]) -> None:
    _pins.reset(token)
