"""vinyl.futures: every combinator, with the same test bodies in sync and in async mode.

Nothing here needs the database. Each both-modes test also records what it observed in OUTCOMES;
``test_both_modes_observed_the_same`` (last in this file) fails if the two modes differ.
"""

import gc
import inspect
import warnings
from contextlib import contextmanager

import pytest

from vinyl import (
    AwaitableInSyncModeError,
    async_mode,
    gather,
    is_async,
    later,
    maybe_async,
    ready,
    sync_mode,
    then,
)
from vinyl.testing import both_modes

OUTCOMES: dict[str, dict[str, object]] = {"sync": {}, "async": {}}


def record(mode, name, value):
    OUTCOMES[mode][name] = value
    return value


def outcome_of(exc: BaseException) -> tuple[str, str]:
    return type(exc).__name__, str(exc)


@contextmanager
def no_unawaited():
    """Fail if a coroutine created in the block was dropped without being awaited or closed."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
        gc.collect()
    leaked = [str(w.message) for w in caught if "never awaited" in str(w.message)]
    assert not leaked, leaked


# -- universal helpers ------------------------------------------------------------------------


@maybe_async
def value(x):
    """A maybe-async value: the result of an operation that waits once."""
    return (yield ready(x))


@maybe_async
def fail(exc):
    """An operation that waits once, then raises *exc*."""
    yield ready(None)
    raise exc


@maybe_async
def add(a, b):
    x = yield value(a)
    y = yield value(b)
    return x + y


# -- @maybe_async -----------------------------------------------------------------------------


@both_modes
def test_maybe_async_result_follows_the_mode(vinyl_mode):
    pending = value(3)
    assert inspect.isawaitable(pending) is (vinyl_mode == "async")
    assert (yield pending) == 3
    assert is_async() is (vinyl_mode == "async")


@both_modes
def test_maybe_async_yields_plain_values(vinyl_mode):
    @maybe_async
    def plain():
        a = yield 1
        b = yield None
        c = yield [a, b]
        return a, b, c

    assert record(vinyl_mode, "plain", (yield plain())) == (1, None, [1, None])


@both_modes
def test_maybe_async_nested_calls(vinyl_mode):
    @maybe_async
    def total():
        return (yield add(1, 2)) + (yield add(value(3), 4))

    assert record(vinyl_mode, "nested", (yield total())) == 10


@both_modes
def test_maybe_async_return_values(vinyl_mode):
    @maybe_async
    def nothing():
        yield value(1)

    @maybe_async
    def no_yield_at_all():
        return "done"
        yield  # pragma: no cover - makes it a generator

    assert (yield nothing()) is None
    assert (yield no_yield_at_all()) == "done"


class Lazy:
    """An awaitable with a sync resolution, as a queryset is."""

    def __await__(self):
        return "rows"
        yield  # pragma: no cover - makes it a generator

    def __vinyl_resolve__(self):
        return "rows"


@both_modes
def test_a_returned_awaitable_is_waited_for(vinyl_mode):
    @maybe_async
    def forgot_the_yield():
        yield value(0)
        return add(1, 2)  # `return (yield add(1, 2))` was meant

    @maybe_async
    def returns_ready():
        return ready(ready(7))
        yield  # pragma: no cover

    @maybe_async
    def returns_lazy():
        return Lazy()  # like `return qs`
        yield  # pragma: no cover

    with no_unawaited():
        assert (yield forgot_the_yield()) == 3
        assert (yield returns_ready()) == 7
        # Sync mode's `yield` resolves what the operation returned, so async mode must too.
        assert (yield returns_lazy()) == "rows"
    record(vinyl_mode, "returned-awaitable", (yield forgot_the_yield()))


@both_modes
def test_exceptions_are_thrown_back_in_and_caught(vinyl_mode):
    @maybe_async
    def catches():
        try:
            yield fail(KeyError("k"))
        except KeyError as exc:
            after = yield value("resumed")
            return f"caught {exc.args[0]}, {after}"

    assert record(vinyl_mode, "caught", (yield catches())) == "caught k, resumed"


@both_modes
def test_uncaught_exceptions_propagate(vinyl_mode):
    @maybe_async
    def passes_through():
        yield fail(LookupError("deep"))
        raise AssertionError("not reached")  # pragma: no cover

    @maybe_async
    def raises_before_first_yield():
        raise ValueError("early")
        yield  # pragma: no cover

    @maybe_async
    def chains():
        try:
            yield fail(KeyError("inner"))
        except KeyError as exc:
            raise RuntimeError("outer") from exc

    with pytest.raises(LookupError, match="deep") as info:
        yield passes_through()
    with pytest.raises(ValueError, match="early"):
        yield raises_before_first_yield()
    with pytest.raises(RuntimeError, match="outer") as chained:
        yield chains()
    assert isinstance(chained.value.__cause__, KeyError)
    record(vinyl_mode, "uncaught", [outcome_of(info.value), outcome_of(chained.value)])


@both_modes
def test_try_finally_runs_and_may_wait(vinyl_mode):
    log = []

    @maybe_async
    def guarded(error):
        log.append("acquire")
        try:
            if error:
                yield fail(error)
            log.append("work")
            return "ok"
        finally:
            log.append((yield value("release")))  # waiting inside finally, as release() does

    assert (yield guarded(None)) == "ok"
    with pytest.raises(OSError, match="io"):
        yield guarded(OSError("io"))
    assert record(vinyl_mode, "finally", log) == [
        "acquire",
        "work",
        "release",
        "acquire",
        "release",
    ]


@both_modes
def test_error_in_finally_replaces_the_original(vinyl_mode):
    @maybe_async
    def replaced():
        try:
            yield fail(KeyError("first"))
        finally:
            yield fail(ValueError("second"))

    with pytest.raises(ValueError, match="second") as info:
        yield replaced()
    assert isinstance(info.value.__context__, KeyError)


@both_modes
def test_methods_classmethods_staticmethods(vinyl_mode):
    class Counter:
        def __init__(self):
            self.n = 0

        @maybe_async
        def bump(self, by):
            self.n += yield value(by)
            return self.n

        @maybe_async
        def bump_twice(self):
            yield self.bump(1)
            return (yield self.bump(10))

        @classmethod
        @maybe_async
        def make(cls, start):
            obj = cls()
            obj.n = yield value(start)
            return obj

        @staticmethod
        @maybe_async
        def double(x):
            return 2 * (yield value(x))

    counter = yield Counter.make(5)
    assert (yield counter.bump_twice()) == 16
    assert (yield Counter.double(21)) == 42
    assert Counter.bump.__name__ == "bump"
    record(vinyl_mode, "methods", counter.n)


@maybe_async
def factorial(n):
    if n <= 1:
        return (yield value(1))
    return n * (yield factorial(n - 1))


@maybe_async
def walk(node):
    """Pre-order names of a tree, each child walked by a recursive operation."""
    names = [(yield value(node["name"]))]
    for child in node.get("children", ()):
        names.extend((yield walk(child)))
    return names


@both_modes
def test_recursion(vinyl_mode):
    assert (yield factorial(20)) == 2432902008176640000
    tree = {
        "name": "root",
        "children": [
            {"name": "a", "children": [{"name": "a1"}, {"name": "a2"}]},
            {"name": "b"},
            {"name": "c", "children": [{"name": "c1", "children": [{"name": "c11"}]}]},
        ],
    }
    names = yield walk(tree)
    assert names == ["root", "a", "a1", "a2", "b", "c", "c1", "c11"]
    deep = {"name": 0}
    node = deep
    for i in range(1, 150):
        node["children"] = [{"name": i}]
        node = node["children"][0]
    assert (yield walk(deep)) == list(range(150))
    record(vinyl_mode, "recursion", names)


@both_modes
def test_many_yields_in_one_generator(vinyl_mode):
    @maybe_async
    def loop(n):
        total = 0
        for i in range(n):
            total += yield value(i)
        return total

    assert (yield loop(5000)) == sum(range(5000))


@both_modes
def test_yielding_an_undecorated_generator_is_a_clear_error(vinyl_mode):
    def helper():  # forgot @maybe_async
        return (yield value(1))

    @maybe_async
    def caller():
        try:
            yield helper()
        except TypeError as exc:
            message = str(exc)
        return message, (yield from helper())  # inline delegation works

    message, inline = yield caller()
    assert "decorate " in message and "helper with @maybe_async" in message
    assert inline == 1
    record(vinyl_mode, "raw-generator", message)


def test_maybe_async_needs_a_generator_function():
    with pytest.raises(TypeError, match="@maybe_async needs a generator function"):
        maybe_async(lambda: 1)


# -- @later -----------------------------------------------------------------------------------


@both_modes
def test_later_positional_keyword_and_default_arguments(vinyl_mode):
    @later
    def combine(a, b, *, c, d=ready(4)):  # noqa: B008 - a maybe-async default, in the body's mode
        return a, b, c, d

    assert (yield combine(value(1), 2, c=value(3))) == (1, 2, 3, 4)
    assert (yield combine(1, value(2), c=3, d=value(5))) == (1, 2, 3, 5)
    assert (yield combine(b=value(2), a=1, c=3)) == (1, 2, 3, 4)  # the default, again

    @later
    def variadic(*args, **kwargs):
        return args, kwargs

    got = yield variadic(value(1), 2, value(3), x=value("x"), y=None)
    assert record(vinyl_mode, "later-args", got) == ((1, 2, 3), {"x": "x", "y": None})


@both_modes
def test_later_result_follows_the_mode(vinyl_mode):
    @later
    def plus_one(x):
        return x + 1

    pending = plus_one(1)
    assert inspect.isawaitable(pending) is (vinyl_mode == "async")
    assert (yield pending) == 2


@both_modes
def test_later_flattens_awaitable_results_and_chains(vinyl_mode):
    @later
    def double(x):
        return value(x * 2)  # a maybe-async result: flattened

    @later
    def double_then_add(x, y):
        return double(add(x, y))  # a chain of two continuations

    @later
    def ready_of_ready(x):
        return ready(ready(x))

    assert (yield double(value(2))) == 4
    assert (yield double_then_add(value(1), 2)) == 6
    assert (yield ready_of_ready(7)) == 7
    record(vinyl_mode, "later-chain", (yield double_then_add(double(1), double(2))))


@both_modes
def test_later_errors(vinyl_mode):
    called = []

    @later
    def track(a, b):
        called.append((a, b))
        return a + b

    @later
    def broken(a):
        raise ZeroDivisionError(f"broken {a}")

    with no_unawaited():
        with pytest.raises(KeyError, match="arg"):
            yield track(fail(KeyError("arg")), value(2))
        with pytest.raises(ZeroDivisionError, match="broken 1"):
            yield broken(value(1))
        with pytest.raises(TypeError):
            yield track(value(1), c=value(3))  # a bad call: TypeError in both modes
    assert called == []
    assert (yield track(1, 2)) == 3


# -- then, ready ------------------------------------------------------------------------------


@both_modes
def test_then(vinyl_mode):
    assert (yield then(value(2), lambda x: x + 1)) == 3
    assert (yield then(5, str)) == "5"
    assert (yield then(value(2), lambda x: value(x * 10))) == 20  # flattened
    assert (yield then(then(value(1), lambda x: x + 1), lambda x: x * 3)) == 6
    called = []
    with no_unawaited():
        with pytest.raises(KeyError):
            yield then(fail(KeyError("v")), called.append)
        with pytest.raises(ZeroDivisionError):
            yield then(value(1), lambda x: x / 0)
    assert called == []
    record(vinyl_mode, "then", (yield then(gather(value(1), 2), sum)))


@both_modes
def test_ready(vinyl_mode):
    obj = object()
    r = ready(obj)
    assert (r is obj) is (vinyl_mode == "sync")
    first = yield r
    second = yield r  # a ready value can be waited for more than once
    assert first is obj and second is obj
    assert (yield ready(None)) is None


# -- gather -----------------------------------------------------------------------------------


@both_modes
def test_gather_results_in_argument_order(vinyl_mode):
    got = yield gather(value(1), 2, value("three"), None, add(2, 2))
    assert got == [1, 2, "three", None, 4]
    assert (yield gather()) == []
    assert (yield gather(1, 2)) == [1, 2]
    nested = yield gather(gather(value(1), 2), then(value(3), str))
    assert nested == [[1, 2], "3"]
    pending = gather(value(1))
    assert inspect.isawaitable(pending) is (vinyl_mode == "async")
    assert (yield pending) == [1]
    record(vinyl_mode, "gather", [got, nested])


@both_modes
def test_gather_failure(vinyl_mode):
    started, finished = [], []

    @maybe_async
    def guarded(x):
        started.append(x)
        try:
            return (yield value(x))
        finally:
            finished.append(x)

    with no_unawaited():
        with pytest.raises(KeyError, match="second") as info:
            yield gather(guarded(1), fail(KeyError("second")), guarded(3))
    # Sync mode stops evaluating arguments at the failure; async mode may have run the third
    # concurrently. Either way no generator is left half-run.
    assert 1 in started and sorted(started) == sorted(finished)
    record(vinyl_mode, "gather-failure", outcome_of(info.value))


@both_modes
def test_gather_of_failures_reports_the_first_in_argument_order(vinyl_mode):
    with no_unawaited():
        with pytest.raises(KeyError) as info:
            yield gather(value(0), fail(KeyError("first")), fail(KeyError("second")))
    record(vinyl_mode, "gather-first", outcome_of(info.value))
    assert info.value.args == ("first",)


@both_modes
def test_a_value_given_twice_is_waited_for_once(vinyl_mode):
    runs = []

    @maybe_async
    def counted(x):
        runs.append(x)
        return (yield value(x))

    v = counted(3)
    assert (yield gather(v, 1, v)) == [3, 1, 3]
    w = counted(4)
    assert (yield later(lambda a, b, c: a + b + c)(w, w, c=w)) == 12
    u = counted(5)
    assert (yield gather(u, then(value(1), str), u)) == [5, "1", 5]
    assert record(vinyl_mode, "given-twice", runs) == [3, 4, 5]


# -- awaitables that reach sync mode (sync-mode only by nature) -------------------------------


async def fetch_row():
    return 1  # pragma: no cover - never awaited: sync mode refuses it


def test_coroutine_reaching_sync_mode_is_a_clear_error_and_is_closed():
    seen = []

    @maybe_async
    def universal(awaitable):
        try:
            yield awaitable
        except AwaitableInSyncModeError as exc:
            seen.append(str(exc))  # thrown back in, like any error
        return "recovered"

    with no_unawaited():
        coro = fetch_row()
        assert universal(coro) == "recovered"
        assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED
    (message,) = seen
    assert "coroutine object fetch_row" in message
    assert "sync mode" in message and "vinyl.sync_mode()" in message
    assert issubclass(AwaitableInSyncModeError, TypeError)


def test_combinators_refuse_coroutines_in_sync_mode_and_close_all_of_them():
    @later
    def pair(a, b):  # pragma: no cover - never called
        return a, b

    with no_unawaited():
        coros = [fetch_row() for _ in range(6)]
        with pytest.raises(AwaitableInSyncModeError, match="fetch_row"):
            pair(coros[0], coros[1])
        with pytest.raises(AwaitableInSyncModeError, match="fetch_row"):
            then(coros[2], str)
        with pytest.raises(AwaitableInSyncModeError, match="fetch_row"):
            gather(1, coros[3], coros[4])  # the one after the failure is closed as well
        with pytest.raises(AwaitableInSyncModeError, match="fetch_row"):
            later(lambda x: coros[5])(1)  # a result that cannot be resolved
        states = [inspect.getcoroutinestate(c) for c in coros]
    assert states == [inspect.CORO_CLOSED] * 6


def test_operation_created_in_async_mode_reaching_sync_mode():
    with async_mode():
        inner = fetch_row()
        pending = later(lambda a, b: (a, b))(value(1), inner)
        op = value(2)
    with no_unawaited():
        with sync_mode():
            with pytest.raises(AwaitableInSyncModeError, match="vinyl pending") as info:
                gather(op, pending)
        assert "await it in async code, or create it under vinyl.sync_mode()" in str(info.value)
        assert inspect.getcoroutinestate(inner) == inspect.CORO_CLOSED


def test_coroutine_returned_in_sync_mode_is_a_clear_error_and_is_closed():
    with no_unawaited():
        coro = fetch_row()

        @maybe_async
        def returns_coro():
            return coro
            yield  # pragma: no cover

        with pytest.raises(AwaitableInSyncModeError, match="fetch_row"):
            returns_coro()
        assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED


def test_no_unawaited_detects_a_leak():
    # The guard above must be able to fail, or the tests using it prove nothing.
    with pytest.raises(AssertionError, match="never awaited"):
        with no_unawaited():
            fetch_row()


# -- the two modes agree ----------------------------------------------------------------------


def test_both_modes_observed_the_same():
    sync, async_ = OUTCOMES["sync"], OUTCOMES["async"]
    if not sync or not async_:
        pytest.skip("run the whole file: this compares what both modes recorded")
    assert set(sync) == set(async_)
    for key in sync:
        assert sync[key] == async_[key], key
