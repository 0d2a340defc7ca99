"""Model signals in the current mode.

Sync mode calls Django's ``Signal.send()`` (async receivers run through ``async_to_sync``, as in
Django). Async mode awaits ``Signal.asend()``: async receivers are awaited on the event loop, and
sync receivers are run by Django through ``sync_to_async`` — in a worker thread, as for any
``asend()``. Django 6.1 runs the sync receivers first, then the async ones concurrently; Django
5.2 runs both groups concurrently. A sync receiver that must run in the event loop's thread
should be written as an ``async def`` receiver.
"""

from __future__ import annotations

from typing import Any

from django.dispatch import Signal

from ..flags import is_async

__all__ = ["send"]


def send(signal: Signal, sender: Any, **named: Any) -> Any:
    """Send *signal* from *sender* in the current mode (maybe-async; the value is not used).

    Nothing is created when no receiver listens, so the common case costs no coroutine.
    """
    if not signal.has_listeners(sender):
        return None
    if is_async():
        return signal.asend(sender=sender, **named)
    signal.send(sender=sender, **named)
    return None
