"""Cancellation shields: clean-up and statements that a cancelled task must let finish.

:func:`shielded` runs a coroutine to its end whatever cancels the caller meanwhile (COMMIT,
ROLLBACK, handing a connection back to its pool); :func:`cancel_once` and :func:`guard` let a
statement see one cancellation (psycopg then cancels it on the server) and hold back the rest
until psycopg is done. Both run the coroutine in the calling task, with no task of their own.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import types
from collections.abc import Awaitable, Coroutine, Generator
from typing import Any, TypeVar

import anyio

__all__ = ["cancel_once", "guard", "shielded"]

T = TypeVar("T")


def _settle(proxy: asyncio.Future[None], _: asyncio.Future[Any]) -> None:
    if not proxy.done():
        proxy.set_result(None)


# The anyio shield scope a holder of the current task has entered, if any (see below).
_holder_scope: contextvars.ContextVar[anyio.CancelScope | None] = contextvars.ContextVar(
    "vinyl_holder_scope", default=None
)


@types.coroutine
def _hold_cancellation(coro: Coroutine[Any, Any, T], passes: int) -> Generator[Any, Any, T]:
    """Run *coro* in the calling task; let it see only the first *passes* cancellations.

    Later cancellations of the caller are held back until *coro* ends, then re-raised. While
    holding, the caller's task waits on a proxy of the future *coro* waits on, so that
    ``Task.cancel()`` (which cancels the future a task waits on) reaches the proxy only. It does
    with no task of its own what ``asyncio.shield`` does with one: a statement costs no extra
    trips round the event loop, and a clean-up that never waits costs nothing.
    """
    held: BaseException | None = None
    send: Any = None
    error: BaseException | None = None
    scope: anyio.CancelScope | None = None
    token: contextvars.Token[anyio.CancelScope | None] | None = None
    try:
        while True:
            try:
                if error is None:
                    waited = coro.send(send)
                else:
                    waited, error = coro.throw(error), None
            except StopIteration as stop:
                if held is not None:
                    raise held from None
                return stop.value
            except BaseException as exc:
                if held is not None and exc is not held:
                    raise held from exc
                raise
            send = None
            if passes:
                try:
                    send = yield waited
                except asyncio.CancelledError as exc:
                    passes -= 1
                    held = error = exc
                except BaseException as exc:
                    error = exc
                continue
            # Holding: the task waits on a proxy, so a cancellation cancels the proxy only.
            # anyio's cancel scopes deliver theirs again at every loop cycle: an anyio shield
            # keeps the task from waking for each. Only one holder of a task enters one at a time
            # (an inner holder waits first, so it would enter first and leave last otherwise).
            if scope is None and _holder_scope.get() is None:
                scope = anyio.CancelScope(shield=True)
                scope.__enter__()
                token = _holder_scope.set(scope)
            if not isinstance(waited, asyncio.Future):
                try:
                    send = yield waited  # a bare yield (asyncio.sleep(0))
                except asyncio.CancelledError as exc:
                    held = held or exc
                continue
            while not waited.done():
                proxy = waited.get_loop().create_future()
                waited.add_done_callback(functools.partial(_settle, proxy))
                try:
                    yield from proxy
                except asyncio.CancelledError as exc:
                    held = held or exc
    finally:
        if scope is not None:
            _holder_scope.reset(token)  # type: ignore[arg-type]
            scope.__exit__(None, None, None)


def shielded(coro: Coroutine[Any, Any, T]) -> Awaitable[T]:
    """Return an awaitable of *coro* that runs to its end even if the caller is cancelled.

    Clean-up that talks to the server (COMMIT, ROLLBACK, handing a connection back to its pool)
    must not stop halfway. A cancellation of the caller (``Task.cancel()``, ``asyncio.timeout``,
    task groups, anyio's cancel scopes) is re-raised once *coro* has finished. (A plain function:
    the awaitable is the holder itself, so a connection's release costs no coroutine of its own.)
    """
    return _hold_cancellation(coro, 0)


async def cancel_once(coro: Coroutine[Any, Any, T]) -> T:
    """Await *coro*; a cancellation of the caller cancels it once, then waits for its end.

    psycopg answers a cancelled query by cancelling it on the server and waiting for the
    server's reply. anyio's cancel scopes deliver a cancellation at every await until the scope
    exits, and a second one interrupts that wait: psycopg then closes the connection while the
    server goes on running the statement. Holding back later cancellations lets psycopg finish
    its clean-up whatever the caller receives meanwhile.
    """
    return await _hold_cancellation(coro, 1)


def guard(value: Any) -> Any:
    """Return *value*, a coroutine of a statement, guarded as :func:`cancel_once` does."""
    return _hold_cancellation(value, 1) if inspect.iscoroutine(value) else value
