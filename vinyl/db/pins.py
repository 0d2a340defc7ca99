"""Which async transaction each task holds: the pins of ``atomic()``, per database alias.

A contextvar maps an alias to the :class:`vinyl.db.transaction.Pin` of the task's open async
``atomic()`` block; tasks started inside the block inherit it. The connection layer reads it to
run a statement on the block's connection, and the compile-only wrapper to answer
``get_autocommit()``.
"""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING, Any

from django.core import mail

if TYPE_CHECKING:
    from .transaction import Pin

__all__ = ["current_pin", "in_test_run", "pin_task", "test_block", "unpin_task"]

_pins: contextvars.ContextVar[dict[str, Pin] | None] = contextvars.ContextVar(
    "vinyl_pins", default=None
)


def current_pin(alias: str) -> Pin | None:
    """Return the transaction pinned to the current task for *alias*, if any (async mode).

    In a test run that may be the test's own transaction (vinyl.db.testdb), until it ends.
    """
    pins = _pins.get()
    pin = None if pins is None else pins.get(alias)
    if pin is not None and pin.session is not None and pin.test_transaction_ended():
        return None
    return pin


def in_test_run() -> bool:
    """Return whether Django's test environment is set up (``setup_test_environment()``, which
    Django's test runner and pytest-django call; ``mail.outbox`` exists then)."""
    return "outbox" in mail.__dict__  # (not hasattr: the module's __getattr__ is slow)


def pin_task(alias: str, pin: Pin) -> contextvars.Token[dict[str, Pin] | None]:
    """Pin *pin* to the current task (and the tasks it starts) for *alias*; undo with the token."""
    return _pins.set({**(_pins.get() or {}), alias: pin})


def unpin_task(token: contextvars.Token[dict[str, Pin] | None]) -> None:
    _pins.reset(token)


def test_block(wrapper: Any) -> Any:
    """Return the innermost atomic block a test opened on Django's connection *wrapper*
    (``TestCase`` marks its blocks ``_from_testcase``), or None outside a test's transaction."""
    if not wrapper.in_atomic_block or wrapper.connection is None:
        return None
    for block in reversed(wrapper.atomic_blocks):
        if getattr(block, "_from_testcase", False):
            return block
    return None
