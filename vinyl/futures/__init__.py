"""Deferred continuations and the async driver: the only code that awaits for universal code.

``driver`` holds ``@maybe_async``, ``@later``, ``gather``, ``then``, ``ready`` and the two drivers
(sync and async) that resume universal generators; ``shields`` holds the cancellation shields the
connection layer wraps its clean-up and statements in. See docs/architecture.md.
"""

from .driver import (
    AwaitableInSyncModeError,
    gather,
    later,
    maybe_async,
    ready,
    then,
)

__all__ = [
    "AwaitableInSyncModeError",
    "gather",
    "later",
    "maybe_async",
    "ready",
    "then",
]
