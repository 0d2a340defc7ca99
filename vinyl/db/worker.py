"""A synchronous Django function run once on a greenlet, its queries answered by the calling task.

Some of Django's query logic does I/O halfway through (``Collector.collect``,
``prefetch_related_objects``, ``QuerySet.in_bulk`` …). In async mode
:func:`vinyl.compiler.replay.call_with_io` runs such a function here: on a greenlet of the calling
task's thread, in a copy of the task's context, with vinyl's compile-only connections installed
in that context. When the function reaches a query, the greenlet switches back to the task with
the compiler; the task runs the query natively on the event loop (its pinned transaction,
cancellation guards and pool included) and switches back in with the rows, or throws the error
in, which is raised where the query stood, as in Django's sync call. So the function runs exactly
once: user code inside it (``on_delete=SET(callable)``, ``pre_init`` and ``post_init``
receivers, custom lookups) runs as often as in Django's own sync call, and a one-shot iterable is
consumed once.

Why a greenlet and not a worker thread (what this module used before). Both run the function
once; a thread costs two thread switches per query and makes the thread and the event loop fight
for the GIL while the loop is busy (the thread waits up to the interpreter's switch interval for
each hand-over). Measured on the demo's menu (a ``prefetch_related`` of 18 objects, one query):
~95 µs of CPU less per call and ~500 µs of CPU less per prefetch with a greenlet (see
docs/architecture.md). The way SQLAlchemy's asyncio extension runs its sync ORM
(``greenlet_spawn`` / ``await_only``), except that the greenlet here never awaits: only the
calling task does, between two switches.

Why this is safe on the loop's thread: the greenlet runs only while the task that switched into
it runs (never concurrently with another task), it has a context of its own (so the compile-only
connections it installs in ``django.db.connections``, an asgiref ``Local`` that keeps a contextvar
per task while a loop runs, are seen by nobody else), and it is always finished before the task's
operation ends (run to its end, or unwound by :class:`Abandoned` when the task gives up).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from typing import Any

from greenlet import getcurrent, greenlet

__all__ = ["Abandoned", "Call", "replaced_connections"]

# Django's connection objects (``connections[alias]``) that call_with_io's compile-only wrappers
# stand in for in this context (the greenlet's): a statement a vinyl operation runs there is
# logged and wrapped by the calling task's connection object, as if the task ran it itself.
replaced_connections: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "vinyl_replaced_connections", default=None
)


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


class Abandoned(BaseException):
    """Raised in the function at its pending query when the calling task gave up on it
    (cancelled, or the operation closed). A BaseException: Django's ``except Exception`` lets
    it pass."""


class Call:
    """One call of a Django function on a greenlet (see the module docstring).

    The calling task drives it: :meth:`start`, then :meth:`send` (a query's result) or
    :meth:`throw` (its error) for each ``("query", (compiler, args))`` event, and for each
    ``("wait", future)`` event (from :meth:`run`) once it has awaited it, until an event
    ``("done", value)`` or ``("error", exception)``; :meth:`abandon` unwinds it early.
    """

    __slots__ = ("_glet", "_task", "_abandoned")

    def __init__(self, func: Callable[[], Any], enter: Callable[[Call], Any]) -> None:
        def run() -> tuple[str, Any]:
            try:
                with enter(self):
                    value = func()
            except BaseException as exc:
                return ("error", exc)
            return ("done", value)

        self._glet = greenlet(run)
        self._glet.gr_context = contextvars.copy_context()
        self._task: Any = None
        self._abandoned = False

    # -- the function's side -------------------------------------------------------------------
    def ask(self, compiler: Any, args: tuple[Any, ...]) -> Any:
        """Hand a query to the calling task; return its result or raise its error."""
        if self._abandoned:
            raise Abandoned
        return self._task.switch(("query", (compiler, args)))

    def run(self, awaitable: Any) -> Any:
        """Run a vinyl operation (an awaitable) here, in the function's context, to its end.

        Its coroutine is stepped here; what it waits for (a future of the event loop) the
        calling task waits for (``("wait", future)`` events), and what the task is thrown at
        that wait (its cancellation) is thrown into the coroutine, as a task would.
        """
        if self._abandoned:
            raise Abandoned
        coroutine = _awaited(awaitable)
        send: Any = None
        error: BaseException | None = None
        while True:
            try:
                if error is None:
                    waited = coroutine.send(send)
                else:
                    waited, error = coroutine.throw(error), None
            except StopIteration as stop:
                return stop.value
            send = None
            if getattr(waited, "_asyncio_future_blocking", False):
                # What a task does with the future its coroutine yields; the calling task then
                # awaits the future itself (asyncio refuses to await a future marked blocking).
                waited._asyncio_future_blocking = False
            try:
                self._task.switch(("wait", waited))
            except Abandoned:
                coroutine.close()  # the task is gone: nothing may be awaited any more
                raise
            except BaseException as exc:
                error = exc

    # -- the calling task's side ---------------------------------------------------------------
    @staticmethod
    def waitable(waited: Any) -> Any:
        """What the task awaits for a ``("wait", waited)`` event: the future, or one turn of the
        loop for a bare ``yield`` (``asyncio.sleep(0)``)."""
        return asyncio.sleep(0) if waited is None else waited

    def start(self) -> tuple[str, Any]:
        """Run the function up to its first query (or its end); return that event."""
        self._task = getcurrent()
        return self._glet.switch()

    def send(self, result: Any) -> tuple[str, Any]:
        """Answer the pending query with *result*; return the next event."""
        self._task = getcurrent()
        return self._glet.switch(result)

    def throw(self, error: BaseException) -> tuple[str, Any]:
        """Raise *error* at the pending query; return the next event."""
        self._task = getcurrent()
        return self._glet.throw(error)

    def abandon(self) -> None:
        """Give up: raise :class:`Abandoned` at the pending query and let the function unwind
        (any query it asks for on the way raises Abandoned too)."""
        self._abandoned = True
        self._task = getcurrent()
        if self._glet and not self._glet.dead:  # started and not finished
            self._glet.throw(Abandoned())
