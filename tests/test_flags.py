"""vinyl.flags: set_async / is_async / sync_mode / async_mode, outside any event loop."""

import asyncio
import contextvars

import pytest

from vinyl import async_mode, is_async, reset_async, set_async, sync_mode
from vinyl.flags import _mode


@pytest.fixture(autouse=True)
def clean_flag():
    assert _mode.get() is None, "a previous test leaked the mode flag"
    yield
    assert _mode.get() is None, "this test leaked the mode flag"


def test_default_is_auto_and_sync_without_a_loop():
    assert _mode.get() is None
    assert is_async() is False


def test_default_is_async_inside_a_running_loop():
    async def probe():
        return is_async()

    assert asyncio.run(probe()) is True
    assert is_async() is False


def test_set_async_true_false_none():
    token = set_async(True)
    try:
        assert is_async() is True
        inner = set_async(False)
        assert is_async() is False
        none = set_async(None)
        assert is_async() is False  # auto, and no loop runs here
        reset_async(none)
        assert is_async() is False
        reset_async(inner)
        assert is_async() is True
    finally:
        reset_async(token)
    assert _mode.get() is None


def test_set_async_none_inside_a_loop_means_auto():
    async def probe():
        token = set_async(False)
        try:
            assert is_async() is False
            set_async(None)
            return is_async()
        finally:
            reset_async(token)

    assert asyncio.run(probe()) is True


def test_set_async_false_inside_a_loop_wins_over_auto():
    async def probe():
        set_async(False)  # the task's context copy: nothing leaks out of asyncio.run
        return is_async()

    assert asyncio.run(probe()) is False
    assert _mode.get() is None


@pytest.mark.parametrize("bad", [1, 0, "yes", "", 1.0, [], object()])
def test_set_async_rejects_non_bool(bad):
    with pytest.raises(TypeError, match=r"set_async\(\) takes True, False or None, not "):
        set_async(bad)
    assert _mode.get() is None


@pytest.mark.parametrize(("factory", "value"), [(sync_mode, False), (async_mode, True)])
def test_context_manager_sets_and_resets(factory, value):
    with factory() as block:
        assert is_async() is value
        assert _mode.get() is value
    assert repr(block) == f"{factory.__name__}()"
    assert _mode.get() is None


def test_context_managers_nest_and_restore_each_level():
    with async_mode():
        assert is_async()
        with sync_mode():
            assert not is_async()
            with async_mode():
                assert is_async()
            assert not is_async()
        assert is_async()
    assert _mode.get() is None


def test_context_manager_restores_an_explicit_set_async():
    token = set_async(True)
    try:
        with sync_mode():
            assert not is_async()
        assert _mode.get() is True
    finally:
        reset_async(token)


def test_context_manager_resets_on_exception():
    with pytest.raises(KeyError):
        with async_mode():
            raise KeyError("x")
    assert _mode.get() is None


def test_same_instance_is_re_entrant():
    block = async_mode()
    with block:
        with sync_mode():
            with block:
                assert is_async()
            assert not is_async()
        assert is_async()
    with block:  # and reusable afterwards
        assert is_async()
    assert _mode.get() is None


def test_exit_in_another_context_is_a_clear_error():
    block = sync_mode()
    block.__enter__()
    try:
        with pytest.raises(RuntimeError, match="same task or thread"):
            contextvars.Context().run(block.__exit__, None, None, None)
    finally:
        block.__exit__(None, None, None)
    assert _mode.get() is None


def test_decorates_sync_functions():
    @sync_mode()
    def in_sync():
        return is_async()

    @async_mode()
    def in_async(x, *, y):
        """Doc."""
        return is_async(), x, y

    assert in_sync() is False
    assert in_async(1, y=2) == (True, 1, 2)
    assert in_async.__name__ == "in_async" and in_async.__doc__ == "Doc."
    assert _mode.get() is None


def test_bare_decorator_form():
    @sync_mode
    def in_sync():
        return is_async()

    @async_mode
    async def in_async():
        return is_async()

    async def main():
        return in_sync(), await in_async()

    assert asyncio.run(main()) == (False, True)
    assert in_sync.__name__ == "in_sync" and asyncio.iscoroutinefunction(in_async)


@pytest.mark.parametrize("factory", [sync_mode, async_mode])
@pytest.mark.parametrize("bad", [True, False, 1, "sync"])
def test_non_callable_argument_is_a_clear_error(factory, bad):
    with pytest.raises(TypeError, match=r"decorates a function, not .*set_async"):
        factory(bad)


def test_decorated_sync_function_resets_on_exception():
    @async_mode()
    def boom():
        assert is_async()
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        boom()
    assert _mode.get() is None


def test_decorated_function_nests_and_recurses():
    @async_mode()
    def outer():
        return [is_async(), inner(), is_async()]

    @sync_mode()
    def inner():
        return is_async()

    assert outer() == [True, False, True]

    @sync_mode()
    def depth(n):
        return [is_async()] if n == 0 else [is_async(), *depth(n - 1)]

    with async_mode():
        assert depth(3) == [False] * 4
        assert is_async()


def test_decorates_async_functions():
    @sync_mode()
    async def in_sync():
        await asyncio.sleep(0)
        return is_async()

    @async_mode()
    async def in_async():
        return is_async()

    async def main():
        token = set_async(False)
        try:
            first = await in_sync()
            second = await in_async()
            return first, second, _mode.get()
        finally:
            reset_async(token)

    assert asyncio.iscoroutinefunction(in_sync)
    assert asyncio.run(main()) == (False, True, False)


def test_decorated_async_function_resets_on_exception():
    @sync_mode()
    async def boom():
        raise ValueError("boom")

    async def main():
        with pytest.raises(ValueError):
            await boom()
        return is_async()

    assert asyncio.run(main()) is True


@pytest.mark.parametrize("factory", [sync_mode, async_mode])
def test_refuses_generator_functions(factory):
    def gen():
        yield

    async def agen():
        yield

    for func in (gen, agen):
        with pytest.raises(
            TypeError, match=rf"cannot decorate the generator function .*{func.__name__}"
        ):
            factory()(func)


def test_copied_context_inherits_and_does_not_leak_back():
    with async_mode():
        ctx = contextvars.copy_context()

    def inside():
        seen = is_async()
        set_async(False)
        return seen, is_async()

    assert ctx.run(inside) == (True, False)
    assert is_async() is False and _mode.get() is None
    assert ctx.run(is_async) is False  # what the copy set stays in the copy
