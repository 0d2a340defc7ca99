"""The query log: ``capture_queries()`` records what vinyl runs, in both modes.

Every statement vinyl sends (connection.run_on, the transaction-control statements of async
``atomic()``, streaming's cursor statements) is passed to :func:`log_query`, which appends it to
the list of the innermost ``capture_queries()`` block of the current context, if any.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["capture_queries", "log_query"]

_query_log: contextvars.ContextVar[list[tuple[str, Any]] | None] = contextvars.ContextVar(
    "vinyl_query_log", default=None
)


@contextmanager
def capture_queries() -> Iterator[list[tuple[str, Any]]]:
    """Record ``(sql, params)`` of every statement vinyl runs in this context (both modes)."""
    log: list[tuple[str, Any]] = []
    token = _query_log.set(log)
    try:
        yield log
    finally:
        _query_log.reset(token)


def log_query(sql: Any, params: Any) -> None:
    log = _query_log.get()
    if log is not None:
        log.append((str(sql), params))
