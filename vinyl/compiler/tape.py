"""The replay tape: the answers of the queries a replayed Django function has asked so far.

While :func:`vinyl.compiler.replay.call_with_io` runs a Django function in async mode, a
compiler's ``execute_sql()`` calls :func:`answer`: the recorded result of that query, or
:class:`NeedsQuery` to have it run. Outside a replay, async mode has no tape and a synchronous
query is an error (:class:`SynchronousQueryError`).
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
    """Raised inside a replayed function at a query whose answer is not on the tape yet.

    A BaseException, so that Django's ``except Exception`` blocks let it through.
    """

    def __init__(self, compiler: Any, args: tuple[Any, ...], key: Any) -> None:
        self.compiler, self.args, self.key = compiler, args, key


_tape: contextvars.ContextVar[dict[Any, Any] | None] = contextvars.ContextVar(
    "vinyl_tape", default=None
)
# The tape of a call_with_io(func, finish): func's first query is its last, so it needs no key.
_FINISH: dict[Any, Any] = {}


def _key(compiler: Any, args: tuple[Any, ...]) -> Any:
    sql = compiler.as_sql()  # also sets up compiler.select & co. for the caller
    return (repr(sql), repr(args))


def answer(compiler: Any, args: tuple[Any, ...]) -> Any:
    """Return the recorded result of this query, or raise NeedsQuery (async mode only)."""
    tape = _tape.get()
    if tape is None:
        raise SynchronousQueryError(
            "A query was about to run synchronously in async mode, which would block the event "
            "loop. Use vinyl's API (Model.vinyl querysets, `await obj.q.<relation>`) and await "
            "it, or run this code in sync mode (vinyl.sync_mode(), in a thread without a loop)."
        )
    if tape is _FINISH:
        raise NeedsQuery(compiler, args, None)  # compiled once, by vinyl_execute_sql()
    try:
        key = _key(compiler, args)
    except EmptyResultSet:
        # No query to run: answer what Django's execute_sql() answers (an empty MULTI result,
        # None otherwise) and let the replayed function carry on, e.g. count() of none() is 0.
        return [] if args and args[0] == MULTI else None
    if key in tape:
        result = tape[key]
        if args and args[0] == MULTI and isinstance(result, list):
            return list(result)
        return result
    raise NeedsQuery(compiler, args, key)
