"""``python -m bench --observe``: what watching vinyl's statements costs (vinyl.db.querylog).

Variants of the vinyl systems, measured in the same interleaved rounds as the systems they vary:

* ``v.async no hook``: vinyl async with the statement hook replaced by a plain call, so the ratio
  ``vinyl async / v.async no hook`` is the cost of the hook when nothing watches;
* ``v.async QueryLog`` / ``v.sync QueryLog``: each operation (each request of the concurrent
  workload) inside its own ``vinyl.QueryLog()``, as ``QueryLogMiddleware`` does per request;
* ``v.async DEBUG``: ``settings.DEBUG = True`` (Django's query list, log records built and
  dropped by the unconfigured ``django.db.backends`` logger), as in development.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

SYSTEMS = [
    "vinyl async",
    "v.async no hook",
    "v.async QueryLog",
    "v.async DEBUG",
    "vinyl sync",
    "v.sync QueryLog",
]
RATIOS = [
    ("vinyl async", "v.async no hook"),
    ("v.async QueryLog", "vinyl async"),
    ("v.async DEBUG", "vinyl async"),
    ("v.sync QueryLog", "vinyl sync"),
]
OPERATIONS = ("get", "filter", "values", "join", "count", "request")


class Variant:
    """*base*'s operations, each run inside ``around()``; ``batch()`` wraps a whole batch."""

    def __init__(
        self,
        base: Any,
        name: str,
        around: Callable[[], Any] = contextlib.nullcontext,
        batch: Callable[[], Any] = contextlib.nullcontext,
    ) -> None:
        self.name = name
        self.is_async = base.is_async
        self.batch = batch
        for operation in OPERATIONS:
            setattr(self, operation, self._wrap(getattr(base, operation), around))

    def _wrap(self, op: Callable[[int], Any], around: Callable[[], Any]) -> Callable[[int], Any]:
        if self.is_async:

            async def run_async(i: int) -> Any:
                with around():
                    return await op(i)

            return run_async

        def run(i: int) -> Any:
            with around():
                return op(i)

        return run


@contextlib.contextmanager
def no_hook() -> Iterator[None]:
    from vinyl.db import connection

    def plain(execute: Any, handle: Any, sql: Any, params: Any, *args: Any) -> Any:
        return execute(handle, sql, params, *args)

    hooked = connection.observed
    connection.observed = plain
    try:
        yield
    finally:
        connection.observed = hooked


def debug() -> Any:
    from django.test.utils import override_settings

    return override_settings(DEBUG=True)


def variants(systems: dict[str, Any]) -> list[Variant]:
    from vinyl import QueryLog

    vinyl_async, vinyl_sync = systems["vinyl async"], systems["vinyl sync"]
    return [
        Variant(vinyl_async, "v.async no hook", batch=no_hook),
        Variant(vinyl_async, "v.async QueryLog", around=QueryLog),
        Variant(vinyl_async, "v.async DEBUG", batch=debug),
        Variant(vinyl_sync, "v.sync QueryLog", around=QueryLog),
    ]
