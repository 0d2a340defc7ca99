"""Model signals in the current mode.

Sync mode calls Django's ``Signal.send()`` (async receivers run through ``async_to_sync``, as in
Django). Async mode awaits ``Signal.asend()``: async receivers are awaited on the event loop, and
sync receivers are run by Django through ``sync_to_async`` — in a worker thread, as for any
``asend()``, where they see sync mode whatever started the write (an a-method included). Django
6.1 runs the sync receivers first, then the async ones concurrently; Django 5.2 runs both groups
concurrently. A sync receiver that must run in the event loop's thread
should be written as an ``async def`` receiver.
"""

from __future__ import annotations

from typing import Any

from django.dispatch import Signal

from ..flags import is_async, reset_async, set_async

__all__ = ["send"]


def send(signal: Signal, sender: Any, **named: Any) -> Any:
    """Send *signal* from *sender* in the current mode (maybe-async; the value is not used).

    Nothing is created when no receiver listens, so the common case costs no coroutine.
    """
    if not signal.has_listeners(sender):
        return None
    if is_async():
        return _asend(signal, sender, named)
    signal.send(sender=sender, **named)
    return None


async def _asend(signal: Signal, sender: Any, named: dict[str, Any]) -> Any:
    # Auto mode while the receivers run: async receivers, on this loop, see async mode; sync
    # receivers, which Django runs in a worker thread, see sync mode there, as in Django. An
    # explicit async mode (vinyl's a-methods set one) would follow them into that thread, where
    # nothing awaits (the copied context carries it).
    token = set_async(None)
    try:
        return await signal.asend(sender=sender, **named)
    finally:
        reset_async(token)
