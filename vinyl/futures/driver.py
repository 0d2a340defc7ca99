"""Deferred continuations: write an operation once, run it eagerly or as a coroutine.

A *maybe-async value* is a plain value in sync mode and an awaitable in async mode. The
combinators here take and return such values, so universal code never asks which mode it is in:

``@maybe_async``
    Drive a generator function: ``row = yield cursor.fetchone()``. Sync mode runs the generator to
    its end at once; async mode returns a coroutine that awaits whatever the generator yields.
    Exceptions are thrown back into the generator in both modes.
``@later``
    Call a function once its arguments (and default values) are ready.
``gather``, ``then``, ``ready``
    Several values at once, a continuation of one value, and a value as it stands.

Awaitables that know how to compute their value synchronously (vinyl's querysets) declare a
``__vinyl_resolve__()`` method; sync mode calls it where async mode would ``await``. Any other
awaitable that reaches sync mode is a bug and raises :class:`AwaitableInSyncModeError`.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import warnings
from collections.abc import Awaitable, Callable, Generator
from types import CoroutineType, GeneratorType
from typing import Any, ParamSpec, TypeVar

import anyio

from ..flags import is_async

__all__ = [
    "AwaitableInSyncModeError",
    "gather",
    "later",
    "maybe_async",
    "ready",
    "then",
]

T = TypeVar("T")
R = TypeVar("R")
P = ParamSpec("P")
_CO_ITERABLE_COROUTINE = inspect.CO_ITERABLE_COROUTINE


# Sync mode in a thread that runs synchronous code for an async-mode caller (vinyl.db.worker):
# each operation started there is handed, not started, to this callable, which has the calling
# task run it on its event loop and returns its value (or raises its error).
_sync_runner: contextvars.ContextVar[Callable[[Any], Any] | None] = contextvars.ContextVar(
    "vinyl_sync_runner", default=None
)


def set_sync_runner(runner: Callable[[Any], Any] | None) -> contextvars.Token[Any]:
    """Have sync mode's operations in this context run by *runner* (see vinyl.db.worker)."""
    return _sync_runner.set(runner)


def reset_sync_runner(token: contextvars.Token[Any]) -> None:
    _sync_runner.reset(token)


# Types whose instances are never awaitable, learnt as values go by: the drivers handle most
# values (rows, lists, None, cursors …) with one set lookup.
_plain_types: set[type] = set()


def _isawaitable(value: Any) -> bool:
    """``inspect.isawaitable``, without its slow ABC check for the plain values of sync code.

    ``await`` accepts exactly these: objects whose type has ``__await__`` (coroutines, futures,
    vinyl's awaitables) and generators of ``@types.coroutine`` functions.
    """
    cls = type(value)
    if cls in _plain_types:
        return False
    if cls is GeneratorType:
        return bool(value.gi_code.co_flags & _CO_ITERABLE_COROUTINE)
    if hasattr(cls, "__await__"):
        return True
    _plain_types.add(cls)
    return False


class AwaitableInSyncModeError(TypeError):
    """An awaitable reached vinyl code running in sync mode."""


def _discard(value: Any) -> None:
    """Close a coroutine (or pending combinator) that will never be awaited."""
    close = getattr(value, "close", None)
    if close is not None and (
        inspect.iscoroutine(value) or isinstance(value, (_Pending, _Operation))
    ):
        close()


def _discard_all(values: Any) -> None:
    for value in values:
        _discard(value)


def _resolve_sync(value: Any) -> Any:
    if not _isawaitable(value):
        return value
    resolve = getattr(type(value), "__vinyl_resolve__", None)
    if resolve is not None:
        return resolve(value)
    message = (
        f"{value!r} is awaitable, but vinyl is running this code in sync mode. It was probably "
        "created in async mode (a running event loop or set_async(True)) and passed to code "
        "that runs in sync mode: await it in async code, or create it under vinyl.sync_mode()."
    )
    _discard(value)
    raise AwaitableInSyncModeError(message)


async def as_coroutine(value: Awaitable[T]) -> T:
    """Return a coroutine that awaits *value* (for APIs that take coroutines only)."""
    return await value


class _Pending:
    """The awaitable a combinator returns in async mode.

    Unlike a bare coroutine it can be closed before it starts *together with the awaitables it
    holds*, so an error in one argument never leaves another one's coroutine unawaited.
    """

    __slots__ = ("_coro", "_children")

    def __init__(self, coro: Any, children: tuple[Any, ...] = ()) -> None:
        self._coro = coro
        self._children = children

    def __await__(self) -> Generator[Any, None, Any]:
        self._children = ()
        return self._coro.__await__()

    def close(self) -> None:
        if inspect.getcoroutinestate(self._coro) == inspect.CORO_CREATED:
            _discard_all(self._children)
        self._children = ()
        self._coro.close()

    def __repr__(self) -> str:
        return f"<vinyl pending {self._coro.__qualname__}>"


class _Ready:
    """An awaitable of a value that is already known (never warns when dropped)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __await__(self) -> Generator[Any, None, Any]:
        return self.value
        yield  # pragma: no cover - makes this a generator

    def __vinyl_resolve__(self) -> Any:
        return self.value


def ready(value: T | Awaitable[T]) -> Awaitable[T]:
    """Return *value* as a maybe-async value: itself in sync mode, an awaitable of it in async.

    A value that is already awaitable is returned as it is, so waiting for the result gives the
    value in both modes rather than, in async mode, the awaitable.
    """
    if is_async() and not _isawaitable(value):
        return _Ready(value)
    return value


# -- @maybe_async: the generator driver ---------------------------------------------------------


def _yielded_generator(value: Generator[Any, Any, Any]) -> TypeError:
    # A generator object is never a maybe-async value: its function lacks @maybe_async (and the
    # caller would silently get the generator instead of its result).
    value.close()
    return TypeError(
        f"A @maybe_async generator yielded the generator object {value.__qualname__}(); "
        f"decorate {value.__qualname__} with @maybe_async, or use `yield from` to run it inline."
    )


def _drive_sync(gen: Generator[Any, Any, T]) -> T:
    send: Any = None
    error: BaseException | None = None
    while True:
        try:
            if error is None:
                value = gen.send(send)
            else:
                value, error = gen.throw(error), None
        except StopIteration as stop:
            result = stop.value
            return result if type(result) in _plain_types else _flatten_sync(result)
        if type(value) in _plain_types:
            send = value
        elif type(value) is GeneratorType and not _isawaitable(value):
            send, error = None, _yielded_generator(value)
        else:
            try:
                send = _resolve_sync(value)
            except BaseException as exc:  # thrown back in, so try/except in the generator works
                send, error = None, exc


class _Operation:
    """What a ``@maybe_async`` operation returns in async mode: its generator, not started.

    Awaiting it runs the generator in a driver coroutine. A driver that finds one among the
    values its generator yields runs it inline, on a stack, instead of awaiting it: a whole tree
    of nested operations runs in one coroutine, with no coroutine and no await chain per level.
    """

    __slots__ = ("_gen", "_args", "_kwargs")

    def __init__(
        self, gen: Generator[Any, Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        self._gen: Generator[Any, Any, Any] | None = gen
        # Closed unstarted, it closes the awaitables it got as arguments. (Kept as given: the
        # drivers take the generator out without looking at them.)
        self._args = args
        self._kwargs = kwargs

    def _take(self) -> Generator[Any, Any, Any]:
        gen = self._gen
        if gen is None:
            raise RuntimeError("cannot reuse already awaited vinyl operation")
        self._gen = None
        return gen

    def __await__(self) -> Generator[Any, None, Any]:
        return _drive_async(self._take()).__await__()

    def close(self) -> None:
        gen = self._gen
        self._gen = None
        if gen is not None:
            gen.close()
            _discard_all((*self._args, *self._kwargs.values()))

    def __del__(self) -> None:
        # Forgetting `await` is the user's bug: warn as Python does for a coroutine.
        if self._gen is not None:
            warnings.warn(
                f"vinyl operation {self._gen.__qualname__!r} was never awaited",
                RuntimeWarning,
                stacklevel=2,
            )

    def __repr__(self) -> str:
        name = self._gen.__qualname__ if self._gen is not None else "(started or closed)"
        return f"<vinyl pending {name}>"


async def _drive_async(gen: Generator[Any, Any, T]) -> T:
    # `gen` is the generator running; `waiting` holds the generators whose yielded operation it
    # runs, innermost last. What a generator returns is sent to the one below it, what it raises
    # is thrown into it, as the separate coroutines of an await chain would.
    waiting: list[Generator[Any, Any, Any]] = []
    send: Any = None
    error: BaseException | None = None
    while True:
        try:
            if error is None:
                value = gen.send(send)
            else:
                value, error = gen.throw(error), None
        except StopIteration as stop:
            send, error = stop.value, None
            if type(send) in _plain_types:  # the common case: a value, for the one below
                if not waiting:
                    return send
                gen = waiting.pop()
                continue
            try:
                while True:  # as later() does; see maybe_async's docstring
                    if type(send) is _Operation:
                        gen = send._take()  # the finished generator's tail call
                        send = _TAIL
                        break
                    if not _isawaitable(send):
                        break
                    send = await send
            except BaseException as exc:
                if not waiting:
                    raise
                gen, send, error = waiting.pop(), None, exc
                continue
            if send is _TAIL:
                send = None
                continue
            if not waiting:
                return send
            gen = waiting.pop()
            continue
        except BaseException as exc:
            if not waiting:
                raise
            gen, send, error = waiting.pop(), None, exc
            continue
        cls = type(value)
        if cls is _Operation:
            inner = value._gen
            if inner is None:
                send, error = None, RuntimeError("cannot reuse already awaited vinyl operation")
                continue
            value._gen = None
            waiting.append(gen)
            gen, send = inner, None
        elif value is None:
            send = None  # a step with nothing to wait for, e.g. prepare() once the pool is open
        elif cls is CoroutineType or _isawaitable(value):
            try:
                send = await value
            except BaseException as exc:  # cancellation included: the generator's finally runs
                send, error = None, exc
        elif inspect.isgenerator(value):
            send, error = None, _yielded_generator(value)
        else:
            send = value


_TAIL: Any = object()


def maybe_async(genfunc: Callable[P, Generator[Any, Any, T]]) -> Callable[P, Awaitable[T]]:
    """Turn a generator function into an operation that follows the mode.

    Type checkers see the operation's async-mode type, ``Awaitable[T]`` of the generator's
    return type ``T``, with the generator's parameters (in sync mode the call returns ``T``).

    Inside the generator, ``x = yield value`` stands where async code would write
    ``x = await value``; ``value`` may be a maybe-async value or a plain one. The generator's
    ``return`` is the result: returned at once in sync mode, by the coroutine in async mode. A
    result that is itself awaitable (``return qs.count()``, ``return qs``) is waited for, as
    ``later()`` does: sync mode cannot tell ``yield op()`` from ``yield <what op returned>``, so
    this is the one rule under which both modes give the caller the same value.
    """
    if not inspect.isgeneratorfunction(genfunc):
        raise TypeError(f"@maybe_async needs a generator function, got {genfunc!r}")

    @functools.wraps(genfunc)
    def operation(*args: Any, **kwargs: Any) -> Any:
        try:
            gen = genfunc(*args, **kwargs)
        except TypeError:
            _discard_all((*args, *kwargs.values()))  # a bad call: nobody will await them
            raise
        if is_async():
            return _Operation(gen, args, kwargs)
        runner = _sync_runner.get()
        if runner is not None:
            return runner(_Operation(gen, args, kwargs))
        return _drive_sync(gen)

    operation.__vinyl_generator__ = genfunc  # type: ignore[attr-defined]
    return operation  # type: ignore[return-value]  # T itself in sync mode


# -- @later, then, gather -----------------------------------------------------------------------


def _bind(sig: inspect.Signature, args: tuple, kwargs: dict) -> tuple[list, dict]:
    try:
        bound = sig.bind(*args, **kwargs)
    except TypeError:
        _discard_all((*args, *kwargs.values()))  # the call fails: nobody will await them
        raise
    bound.apply_defaults()
    return list(bound.args), dict(bound.kwargs)


async def _call_later(func: Callable[..., Any], args: list, kwargs: dict) -> Any:
    given = (*args, *kwargs.values())
    values = list(given)
    results: dict[int, Any] = {}  # by id: an awaitable given twice is awaited once, as in sync mode
    for i, value in enumerate(given):
        if not _isawaitable(value):
            continue
        if id(value) not in results:
            try:
                results[id(value)] = await value
            except BaseException:
                _discard_all(given[i + 1 :])
                raise
        values[i] = results[id(value)]
    n = len(args)
    result = func(*values[:n], **dict(zip(kwargs, values[n:], strict=True)))
    while _isawaitable(result):
        result = await result
    return result


def _flatten_sync(result: Any) -> Any:
    while _isawaitable(result):
        result = _resolve_sync(result)
    return result


def later(func: Callable[P, T | Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """Call *func* once every argument it receives, defaults included, is a value.

    Sync mode calls it at once. Async mode returns an awaitable that awaits each awaitable
    argument in order, calls *func*, and awaits its result too if that is awaitable.
    """
    sig = inspect.signature(func)

    @functools.wraps(func)
    def continuation(*args: Any, **kwargs: Any) -> Any:
        args_, kwargs_ = _bind(sig, args, kwargs)
        if is_async():
            return _Pending(_call_later(func, args_, kwargs_), (*args_, *kwargs_.values()))
        try:
            args_ = [_resolve_sync(value) for value in args_]
            kwargs_ = {key: _resolve_sync(value) for key, value in kwargs_.items()}
        except BaseException:
            _discard_all((*args_, *kwargs_.values()))
            raise
        return _flatten_sync(func(*args_, **kwargs_))

    return continuation  # type: ignore[return-value]  # T itself in sync mode


def then(value: T | Awaitable[T], func: Callable[[T], R | Awaitable[R]]) -> Awaitable[R]:
    """Return ``func(value)`` once *value* is ready (a maybe-async value, flattened)."""
    if is_async():
        return _Pending(_call_later(func, [value], {}), (value,))
    return _flatten_sync(func(_resolve_sync(value)))


def _retrieve(task: asyncio.Future[Any]) -> None:
    # gather() reports one failure; the others are marked retrieved so asyncio does not log them
    # as "never retrieved" (asyncio.gather does the same).
    if not task.cancelled():
        task.exception()


async def _gather_async(values: tuple[Any, ...]) -> list[Any]:
    results = list(values)
    tasks: dict[int, asyncio.Future[Any]] = {}
    by_id: dict[int, asyncio.Future[Any]] = {}  # an awaitable given twice runs once, as in sync
    for i, value in enumerate(values):
        if _isawaitable(value):
            task = by_id.get(id(value))
            if task is None:
                task = by_id[id(value)] = asyncio.ensure_future(value)
                task.add_done_callback(_retrieve)
            tasks[i] = task
    if not tasks:
        return results
    cancelled: BaseException | None = None
    try:
        await asyncio.wait(by_id.values(), return_when=asyncio.FIRST_EXCEPTION)
    except asyncio.CancelledError as exc:
        cancelled = exc
    for task in by_id.values():
        task.cancel()  # a no-op on the finished ones
    cancelled = await _wait_children(by_id.values()) or cancelled
    errors = [
        task.exception()
        for task in tasks.values()
        if not task.cancelled() and task.exception() is not None
    ]
    if errors:  # the first failure in argument order; the others as notes, never dropped
        first = errors[0]
        for other in errors[1:]:
            if other is not first:
                first.add_note(f"vinyl.gather(): another value failed too: {other!r}")
        raise first
    if cancelled is not None:
        raise cancelled
    for i, task in tasks.items():
        results[i] = task.result()  # a child cancelled from outside raises CancelledError here
    return results


async def _wait_children(children: Any) -> BaseException | None:
    """Wait until every child task has finished, whatever cancels the caller meanwhile.

    Return the caller's cancellation, if one came, for the caller to re-raise: gather() is
    structured, it returns or raises only once its children are done. anyio's cancel scopes
    deliver their cancellation again at every loop cycle; a shield scope keeps the wait quiet.
    """
    cancelled: BaseException | None = None
    pending = [task for task in children if not task.done()]
    if not pending:
        return None
    with anyio.CancelScope(shield=True):
        while pending:
            try:
                await asyncio.wait(pending)
            except asyncio.CancelledError as exc:
                cancelled = cancelled or exc
            pending = [task for task in pending if not task.done()]
    return cancelled


def gather(*values: T | Awaitable[T]) -> Awaitable[list[T]]:
    """Return the list of the values once all are ready.

    Async mode runs the awaitables concurrently; the first one to fail cancels the others and its
    error propagates (the errors of others that failed too are added to it as notes). It is
    structured: it returns or raises only after every child has finished, under cancellation
    too. Sync mode computes them in order.
    """
    if is_async():
        return _Pending(_gather_async(values), values)
    results = []
    for i, value in enumerate(values):
        try:
            results.append(_resolve_sync(value))
        except BaseException:
            _discard_all(values[i + 1 :])  # never to be awaited: close them
            raise
    return results
