"""A synchronous Django function run once in a worker thread, its queries answered by the loop.

Some of Django's query logic does I/O halfway through (``Collector.collect``,
``prefetch_related_objects``, ``QuerySet.in_bulk`` …). In async mode :func:`vinyl.replay.call_with_io`
runs such a function here: in a worker thread, in a copy of the calling task's context, in sync
mode, with vinyl's compile-only connections installed for that thread. When the function starts a
vinyl operation (a compiler's query when Django's code reaches one, or a vinyl queryset's), the
thread hands the operation, not started, to the calling task (:meth:`Call.run`) and blocks; the
task runs it natively on the event loop (its pinned transaction, cancellation guards and pool
included) and hands the value back, or the error, which is raised where the call stood, as in
Django's sync call. So the
function runs exactly once: user code inside it (``on_delete=SET(callable)``, ``pre_init`` and
``post_init`` receivers, custom lookups) runs as often as in Django's own sync call, and a
one-shot iterable is consumed once.

This module holds the thread side and the hand-over; the task side is the generator in
vinyl.compiler.replay, which yields :meth:`Call.next` and the operations.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
from collections.abc import Callable
from typing import Any

__all__ = ["Abandoned", "Call"]

# Threads stay blocked only while their calling task awaits a query; more calls than threads
# wait for a free one (never a deadlock: the loop answers the ones that run).
_executor = concurrent.futures.ThreadPoolExecutor(max_workers=32, thread_name_prefix="vinyl-call")
_POLL = 0.5  # seconds between checks that the calling task and its loop still wait


class Abandoned(BaseException):
    """Raised in the worker thread at its pending query when the calling task gave up on it
    (cancelled, or the loop closed). A BaseException: Django's ``except Exception`` lets it pass."""


class Call:
    """One call of a Django function in a worker thread (see the module docstring)."""

    def __init__(self, func: Callable[[], Any], enter: Callable[[Call], Any]) -> None:
        self.loop = asyncio.get_running_loop()
        self._events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._finished = self.loop.create_future()
        self._abandoned = False
        context = contextvars.copy_context()
        self._thread = self.loop.run_in_executor(_executor, context.run, self._run, func, enter)

    # -- the worker thread ---------------------------------------------------------------------
    def _run(self, func: Callable[[], Any], enter: Callable[[Call], Any]) -> None:
        try:
            with enter(self):
                value = func()
        except BaseException as exc:
            self._post("error", exc)
        else:
            self._post("done", value)

    def run(self, operation: Any) -> Any:
        """Have the calling task await *operation* (a vinyl operation, not started, that sync
        code of the thread called); return its value or raise its error (thread side)."""
        try:
            return self._hand_over("run", (operation, None))
        finally:
            operation.close()  # never awaited when the task gave up first; else a no-op

    def _hand_over(self, kind: str, work: tuple[Any, Any]) -> Any:
        if self._abandoned:
            raise Abandoned
        answer: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._post(kind, (*work, answer))
        while True:
            try:
                return answer.result(timeout=_POLL)
            except concurrent.futures.TimeoutError:
                if self._abandoned or self.loop.is_closed():
                    raise Abandoned from None

    def _post(self, kind: str, payload: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(self._events.put_nowait, (kind, payload))
        except RuntimeError:  # the loop is closed: nobody waits any more
            if kind != "done" and kind != "error":
                raise Abandoned from None

    # -- the calling task ----------------------------------------------------------------------
    def next(self) -> Any:
        """Await the thread's next event: ``("run", (operation, None, answer))``, ``("done",
        value)`` or ``("error", exception)``."""
        return self._events.get()

    def abandon(self, answer: concurrent.futures.Future[Any] | None) -> Any:
        """Give up: the pending query raises :class:`Abandoned` in the thread; return an
        awaitable of the thread's end (await it shielded before re-raising)."""
        self._abandoned = True
        pending = [answer]
        while not self._events.empty():
            kind, payload = self._events.get_nowait()
            if kind == "run":
                pending.append(payload[2])
        for future in pending:
            if future is not None and not future.done():
                future.set_exception(Abandoned())
        return self._wait_thread()

    async def _wait_thread(self) -> None:
        try:
            await self._thread
        except BaseException:
            pass
