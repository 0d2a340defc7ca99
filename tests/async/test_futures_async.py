"""vinyl.futures in async mode only: concurrency, cancellation, and closing what will never run."""

import asyncio
import gc
import inspect
import warnings

import pytest

from vinyl import gather, later, maybe_async, ready, then

pytestmark = pytest.mark.anyio


def closed(coro) -> bool:
    return inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED


class Probe:
    """Coroutines that say whether they started, finished or were cancelled."""

    def __init__(self):
        self.events = []

    async def slow(self, name, result=None, delay=10.0):
        self.events.append(("start", name))
        try:
            await asyncio.sleep(delay)
        except asyncio.CancelledError:
            self.events.append(("cancelled", name))
            raise
        self.events.append(("done", name))
        return result

    async def fail(self, name, exc, delay=0.0):
        self.events.append(("start", name))
        await asyncio.sleep(delay)
        self.events.append(("raise", name))
        raise exc


@pytest.fixture
async def loop_errors(anyio_backend):
    """What asyncio's exception handler saw (e.g. "Task exception was never retrieved")."""
    loop = asyncio.get_running_loop()
    seen = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: seen.append(context["message"]))
    yield seen
    gc.collect()
    loop.set_exception_handler(previous)
    assert seen == []


@pytest.fixture
def no_unawaited():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
        gc.collect()
    leaked = [str(w.message) for w in caught if "never awaited" in str(w.message)]
    assert not leaked, leaked


async def test_gather_runs_awaitables_concurrently_and_keeps_argument_order():
    first_may_finish = asyncio.Event()

    async def first():
        await first_may_finish.wait()  # only set by the second: needs both to run at once
        return "first"

    async def second():
        await asyncio.sleep(0)
        first_may_finish.set()
        return "second"

    got = await asyncio.wait_for(gather(first(), 0, second()), timeout=5)
    assert got == ["first", 0, "second"]


async def test_gather_failure_cancels_the_others(loop_errors, no_unawaited):
    probe = Probe()
    log = []

    @maybe_async
    def op_with_cleanup():
        try:
            yield probe.slow("op")
        finally:
            log.append((yield ready("released")))  # a wait inside finally, after cancellation

    with pytest.raises(KeyError, match="boom"):
        await gather(probe.slow("a"), probe.fail("b", KeyError("boom"), 0.01), op_with_cleanup())
    assert ("cancelled", "a") in probe.events and ("cancelled", "op") in probe.events
    assert ("done", "a") not in probe.events
    assert log == ["released"]


async def test_gather_reports_one_failure_and_retrieves_the_others(loop_errors):
    probe = Probe()
    with pytest.raises(ValueError, match="one"):
        await gather(probe.fail("1", ValueError("one")), probe.fail("2", ValueError("two")))
    assert ("raise", "2") in probe.events  # both failed; the first in argument order won
    # loop_errors asserts asyncio logged no "Task exception was never retrieved".


async def test_cancelling_gather_cancels_its_children(loop_errors):
    probe = Probe()
    task = asyncio.ensure_future(gather(probe.slow("a"), probe.slow("b")))
    while len(probe.events) < 2:
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sorted(probe.events) == [
        ("cancelled", "a"),
        ("cancelled", "b"),
        ("start", "a"),
        ("start", "b"),
    ]


class SlowToStop(Probe):
    """A child that, cancelled, needs a while to clean up and then fails."""

    async def stubborn(self, name, error, cleanup=0.2):
        self.events.append(("start", name))
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            self.events.append(("cleaning", name))
            await asyncio.shield(asyncio.sleep(cleanup))
            self.events.append(("raise", name))
            raise error from None


async def test_gather_under_an_anyio_cancel_scope_waits_for_its_children(loop_errors):
    """anyio delivers a scope's cancellation at every loop cycle: gather() must still wait for
    each child and report a child's error instead of dropping it (issue 11)."""
    import anyio

    probe = SlowToStop()
    with pytest.raises(ValueError, match="cleanup failed"):
        with anyio.move_on_after(0.05):
            await gather(probe.stubborn("a", ValueError("cleanup failed")), probe.slow("b"))
    assert ("raise", "a") in probe.events
    assert ("cancelled", "b") in probe.events


async def test_gather_cancelled_by_task_cancel_waits_for_its_children(loop_errors):
    probe = SlowToStop()
    task = asyncio.ensure_future(gather(probe.stubborn("a", KeyError("late")), probe.slow("b")))
    while len(probe.events) < 2:
        await asyncio.sleep(0)
    task.cancel()
    await asyncio.sleep(0.01)
    task.cancel()  # twice, as anyio's scopes do
    with pytest.raises(KeyError, match="late"):
        await task
    assert probe.events[-1] == ("raise", "a")


async def test_gather_reports_every_failure(loop_errors):
    probe = Probe()
    with pytest.raises(ValueError, match="one") as info:
        await gather(probe.fail("1", ValueError("one")), probe.fail("2", ValueError("two")))
    assert any("two" in note for note in info.value.__notes__)


async def test_later_closes_the_other_arguments_when_one_fails(no_unawaited):
    probe = Probe()
    called = []

    @maybe_async
    def op(awaitable):
        return (yield awaitable)

    @later
    def three(a, b, c):  # pragma: no cover - never called
        called.append((a, b, c))

    later_coro = probe.slow("c", delay=0)
    nested_coro = probe.slow("b-inner", delay=0)
    with pytest.raises(KeyError):
        await three(probe.fail("a", KeyError("a")), op(nested_coro), c=later_coro)
    assert called == []
    assert closed(later_coro) and closed(nested_coro)
    assert probe.events == [("start", "a"), ("raise", "a")]  # the others never started


async def test_later_awaits_arguments_in_order():
    probe = Probe()

    @later
    def pair(a, b):
        return a, b

    got = await pair(probe.slow("a", 1, 0.01), b=probe.slow("b", 2, 0))
    assert got == (1, 2)
    assert probe.events == [("start", "a"), ("done", "a"), ("start", "b"), ("done", "b")]


async def test_later_cancelled_while_awaiting_an_argument_closes_the_rest(no_unawaited):
    probe = Probe()
    rest = probe.slow("rest", delay=0)
    task = asyncio.ensure_future(later(lambda a, b: (a, b))(probe.slow("a"), rest))
    while not probe.events:
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert closed(rest)
    assert probe.events == [("start", "a"), ("cancelled", "a")]


async def test_a_bad_call_closes_the_coroutines_it_was_given(no_unawaited):
    probe = Probe()
    coro = probe.slow("x", delay=0)

    @later
    def one(a):  # pragma: no cover - never called
        return a

    @maybe_async
    def op(a):  # pragma: no cover - never called
        return (yield a)

    other = probe.slow("y", delay=0)
    with pytest.raises(TypeError):
        one(coro, unexpected=1)
    with pytest.raises(TypeError):
        op(other, 2)
    assert closed(coro) and closed(other)


async def test_pending_closed_before_it_starts_closes_its_arguments(no_unawaited):
    probe = Probe()

    @maybe_async
    def op(awaitable):  # pragma: no cover - never started
        return (yield awaitable)

    coros = [probe.slow(str(i), delay=0) for i in range(4)]
    pendings = [
        later(lambda a: a)(coros[0]),
        then(coros[1], str),
        gather(1, coros[2]),
        op(coros[3]),
    ]
    for pending in pendings:
        pending.close()
    assert all(closed(c) for c in coros)
    assert probe.events == []


async def test_cancellation_is_thrown_into_the_generator(no_unawaited):
    probe = Probe()
    log = []

    @maybe_async
    def op():
        try:
            yield probe.slow("io")
        except asyncio.CancelledError:
            log.append("saw cancel")
            raise
        finally:
            log.append((yield ready("cleanup awaited")))

    task = asyncio.ensure_future(op())
    while not probe.events:
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()
    assert log == ["saw cancel", "cleanup awaited"]


async def test_an_operation_never_awaited_still_warns():
    # Forgetting `await` is the user's bug, and Python's warning is how they learn of it.
    @maybe_async
    def op():  # pragma: no cover - never started
        yield ready(1)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        op()
        gc.collect()
    assert any("never awaited" in str(w.message) for w in caught)


async def test_ready_value_awaited_twice_and_operations_awaited_once():
    r = ready([1])
    assert await r == [1] and await r == [1]
    assert ready(r) is r  # already awaitable: kept as is

    @maybe_async
    def op():
        return (yield r)

    pending = op()
    assert await pending == [1]
    with pytest.raises(RuntimeError, match="cannot reuse already awaited"):
        await pending
