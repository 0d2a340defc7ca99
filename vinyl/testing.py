"""A pytest plugin for testing code that uses vinyl in both modes.

Enable it with ``-p vinyl.testing`` (or ``pytest_plugins = ["vinyl.testing"]``). Then::

    from vinyl.testing import both_modes

    @both_modes
    def test_count(db):                       # any fixtures
        n = yield Book.vinyl.count()          # `yield` where async code would `await`
        assert n == 0

runs the body twice: once in sync mode (driven eagerly in the test's thread) and once in async
mode (a coroutine on anyio's asyncio runner). Declare a ``vinyl_mode`` argument to learn which.
After each async run the pools of that event loop are closed, so no connection outlives its loop.

Query counts that work in async tests too (see vinyl.querycount): the fixtures
``vinyl_assert_num_queries`` and ``vinyl_assert_max_num_queries`` (pytest-django's
``django_assert_num_queries`` and ``django_assert_max_num_queries``), ``CaptureQueriesContext``
(Django's) and ``AssertNumQueriesMixin`` (``TestCase.assertNumQueries``).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import pytest

from .db.pool import close_pools
from .flags import async_mode, sync_mode
from .futures.driver import _drive_async, _drive_sync

# Query counts for async tests too (vinyl.querycount); the two fixtures are this plugin's.
from .querycount import (  # noqa: F401
    AssertNumQueriesMixin,
    CaptureQueriesContext,
    vinyl_assert_max_num_queries,
    vinyl_assert_num_queries,
)

__all__ = ["AssertNumQueriesMixin", "CaptureQueriesContext", "both_modes"]

MODES = ("sync", "async")


def both_modes(genfunc: Callable[..., Any]) -> Callable[..., Any]:
    """Run a generator test body in sync and in async mode (see the module docstring)."""
    if not inspect.isgeneratorfunction(genfunc):
        raise TypeError(f"@both_modes needs a generator function (use yield), got {genfunc!r}")
    sig = inspect.signature(genfunc)
    wants_mode = "vinyl_mode" in sig.parameters
    params = [p for p in sig.parameters.values() if p.name not in ("vinyl_mode", "anyio_backend")]
    extra = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY)
        for name in ("vinyl_mode", "anyio_backend")
    ]

    def body_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
        kwargs = dict(kwargs)
        kwargs.pop("anyio_backend", None)
        if not wants_mode:
            kwargs.pop("vinyl_mode", None)
        return kwargs

    @functools.wraps(genfunc)
    def test(*args: Any, **kwargs: Any) -> None:  # args: `self` of a test method
        if kwargs["vinyl_mode"] != "sync":
            raise RuntimeError(
                f"{genfunc.__qualname__} is a @both_modes test, but its async run reached the "
                "sync runner: the vinyl.testing pytest plugin is not loaded. Add `-p vinyl.testing` "
                "to pytest's addopts, or `pytest_plugins = ['vinyl.testing']` to the root conftest."
            )
        with sync_mode():
            _drive_sync(genfunc(*args, **body_kwargs(kwargs)))

    async def run_async(*args: Any, **kwargs: Any) -> None:
        with async_mode():
            try:
                await _drive_async(genfunc(*args, **body_kwargs(kwargs)))
            finally:
                await close_pools()

    del test.__wrapped__  # pytest must see the signature below, not the generator's
    test.__signature__ = sig.replace(parameters=[*params, *extra])  # type: ignore[attr-defined]
    test.vinyl_async_body = run_async  # type: ignore[attr-defined]
    return pytest.mark.parametrize("vinyl_mode", MODES)(test)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    run_async = getattr(pyfuncitem.obj, "vinyl_async_body", None)
    if run_async is None or pyfuncitem.funcargs.get("vinyl_mode") != "async":
        return None
    from anyio.pytest_plugin import extract_backend_and_options, get_runner

    backend = pyfuncitem.funcargs.get("anyio_backend") or "asyncio"
    name, options = extract_backend_and_options(backend)
    if name != "asyncio":
        pytest.skip("psycopg's async API runs on asyncio only")
    kwargs = {arg: pyfuncitem.funcargs[arg] for arg in pyfuncitem._fixtureinfo.argnames}
    instance = getattr(pyfuncitem.obj, "__self__", None)  # a test method's class instance
    if instance is not None:
        run_async = functools.partial(run_async, instance)
    with get_runner(name, options) as runner:
        runner.run_test(run_async, kwargs)
    return True
