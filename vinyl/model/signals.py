"""Model signals in the current mode.

Sync mode calls Django's ``Signal.send()`` (async receivers run through ``async_to_sync``, as in
Django). Async mode mirrors ``Signal.asend()``: the sync receivers first, then the async ones
concurrently, awaited on the event loop (Django 6.1's order; 5.2 ran both groups at once). The
sync receivers are sync code: where Django's ``asend()`` runs them through ``sync_to_async``,
on a Django connection of another thread, vinyl runs them once in its worker thread
(:func:`vinyl.compiler.replay.call_sync_code`), in sync mode, and their queries run in the
calling task, in its transaction, as the sender's do.
"""

from __future__ import annotations

from typing import Any

from django.dispatch import Signal

from ..compat import mirrors
from ..compiler.replay import call_sync_code
from ..flags import is_async
from ..futures import gather, maybe_async

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


@mirrors("django.dispatch.dispatcher:Signal.asend")
@maybe_async
def _asend(signal: Signal, sender: Any, named: dict[str, Any]):
    sync_receivers, async_receivers = signal._live_receivers(sender)
    if sync_receivers:

        def sync_send() -> None:
            for receiver in sync_receivers:
                receiver(signal=signal, sender=sender, **named)

        yield call_sync_code(sync_send)
    if async_receivers:
        yield gather(
            *(receiver(signal=signal, sender=sender, **named) for receiver in async_receivers)
        )
