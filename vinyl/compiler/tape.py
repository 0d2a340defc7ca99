"""Who answers a query that Django's code asks synchronously in async mode (the "tape").

While :func:`vinyl.compiler.replay.call_with_io` runs a Django function on the loop in async
mode (``count()``'s one query, or a probe), a compiler's ``execute_sql()`` calls :func:`answer`,
and :class:`NeedsQuery` stops the function at the query. (In vinyl's worker thread the mode is
sync, and the calling task runs the query: vinyl.db.worker.) Outside those, async mode has no
tape and a synchronous query is an error (:class:`SynchronousQueryError`).
"""

from __future__ import annotations

import contextvars
from typing import Any

from django.core.exceptions import EmptyResultSet
from django.db.models.sql.constants import MULTI

__all__ = ["NeedsQuery", "SynchronousQueryError", "answer"]


class SynchronousQueryError(RuntimeError):
    """A query was about to run synchronously in async mode."""


class NeedsQuery(BaseException):
    """Raised inside a Django function, run on the loop, at a query it cannot answer there.

    A BaseException, so that Django's ``except Exception`` blocks let it through.
    """

    def __init__(self, compiler: Any, args: tuple[Any, ...], key: Any) -> None:
        self.compiler, self.args, self.key = compiler, args, key


# What answers a query: _FINISH, or a dict (a probe: a query raises NeedsQuery unless it is
# known to be empty).
_tape: contextvars.ContextVar[Any] = contextvars.ContextVar("vinyl_tape", default=None)
# The tape of a call_with_io(func, finish): func's first query is its last.
_FINISH: dict[Any, Any] = {}


def answer(compiler: Any, args: tuple[Any, ...]) -> Any:
    """Return the result of this query, or raise NeedsQuery (async mode only)."""
    tape = _tape.get()
    if tape is None:
        raise SynchronousQueryError(
            "A query was about to run synchronously in async mode, which would block the event "
            "loop. Use vinyl's API (Model.vinyl querysets, `await obj.q.<relation>`) and await "
            "it, or run this code in sync mode (vinyl.sync_mode(), in a thread without a loop)."
        )
    if tape is not _FINISH:  # a probe
        try:
            compiler.as_sql()
        except EmptyResultSet:
            # No query to run: answer what Django's execute_sql() answers (an empty MULTI
            # result, None otherwise) and let the function carry on.
            return [] if args and args[0] == MULTI else None
    raise NeedsQuery(compiler, args, None)  # (_FINISH: compiled once, by vinyl_execute_sql())
