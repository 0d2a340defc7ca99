"""Query counts in tests that work in both modes, async tests included.

Django's ``CaptureQueriesContext`` (under ``TestCase.assertNumQueries``) and pytest-django's
``django_assert_num_queries`` call ``connection.ensure_connection()`` on entry, which raises
``SynchronousOnlyOperation`` in a thread that runs an event loop, i.e. in every async test. The
drop-ins here skip that call there (async mode never uses Django's connection) and otherwise are
Django's and pytest-django's: they switch on ``connection.force_debug_cursor`` and count the
entries of ``connection.queries_log``, where Django's cursor (sync mode) and vinyl.db.querylog
(async mode) list each statement, and they fail with the same messages.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import pytest
from django.core.signals import request_started
from django.db import DEFAULT_DB_ALIAS, connections, reset_queries
from django.test import testcases, utils

from .compat import mirrors

__all__ = [
    "AssertNumQueriesMixin",
    "CaptureQueriesContext",
    "vinyl_assert_max_num_queries",
    "vinyl_assert_num_queries",
]


class CaptureQueriesContext(utils.CaptureQueriesContext):
    """Django's ``CaptureQueriesContext``, usable in async tests too."""

    @mirrors("django.test.utils:CaptureQueriesContext.__enter__")
    def __enter__(self) -> CaptureQueriesContext:
        if asyncio._get_running_loop() is None:
            return super().__enter__()
        # Django's __enter__ without ensure_connection(), which refuses to run in a loop's thread.
        self.force_debug_cursor = self.connection.force_debug_cursor
        self.connection.force_debug_cursor = True
        self.initial_queries = len(self.connection.queries_log)
        self.final_queries = None
        self.reset_queries_disconnected = request_started.disconnect(reset_queries)
        return self


class _AssertNumQueriesContext(testcases._AssertNumQueriesContext, CaptureQueriesContext):
    """Django's assertNumQueries context (its check and message) over the capture above."""


class AssertNumQueriesMixin:
    """A ``TestCase`` mixin whose ``assertNumQueries`` also works in ``async def`` tests."""

    def assertNumQueries(
        self, num: int, func: Any = None, *args: Any, using: str = DEFAULT_DB_ALIAS, **kwargs: Any
    ) -> Any:
        context = _AssertNumQueriesContext(self, num, connections[using])
        if func is None:
            return context
        with context:
            func(*args, **kwargs)


@contextmanager
def _assert_num_queries(
    config: pytest.Config,
    num: int,
    exact: bool = True,
    connection: Any | None = None,
    info: str | None = None,
    *,
    using: str | None = None,
) -> Iterator[CaptureQueriesContext]:
    # pytest-django 4.14's _assert_num_queries over the capture above (same checks, messages);
    # not a Django function, so the drift guard (vinyl.compat.mirrors) cannot watch it.
    if connection and using:
        raise ValueError('The "connection" and "using" parameter cannot be used together')
    if connection is not None:
        conn = connection
    else:
        conn = connections[using or DEFAULT_DB_ALIAS]
    verbose = config.getoption("verbose") > 0
    with CaptureQueriesContext(conn) as context:
        yield context
        num_performed = len(context)
        failed = num != num_performed if exact else num_performed > num
        if failed:
            msg = f"Expected to perform {num} queries "
            if not exact:
                msg += "or less "
            verb = "was" if num_performed == 1 else "were"
            msg += f"but {num_performed} {verb} done"
            if info:
                msg += f"\n{info}"
            if verbose:
                sqls = (q["sql"] for q in context.captured_queries)
                msg += "\n\nQueries:\n========\n\n" + "\n\n".join(sqls)
            else:
                msg += " (add -v option to show queries)"
            pytest.fail(msg)


@pytest.fixture
def vinyl_assert_num_queries(pytestconfig: pytest.Config) -> Any:
    """pytest-django's ``django_assert_num_queries``, usable in async tests too."""
    return partial(_assert_num_queries, pytestconfig)


@pytest.fixture
def vinyl_assert_max_num_queries(pytestconfig: pytest.Config) -> Any:
    """pytest-django's ``django_assert_max_num_queries``, usable in async tests too."""
    return partial(_assert_num_queries, pytestconfig, exact=False)
