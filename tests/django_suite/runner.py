"""The test runner the harness gives Django's ``runtests.py`` (settings' ``TEST_RUNNER``).

Django's ``DiscoverRunner`` with three additions, set by environment variables the harness's
``run`` module passes:

* ``VINYL_SUITE_VINYL``: ``off`` (Django alone), ``sync`` (vinyl in place, see
  :mod:`tests.django_suite.install`) or ``driven`` (vinyl in place, every operation run in async
  mode on an event loop).
* ``VINYL_SUITE_ONLY``: ``async`` keeps only the tests written as coroutines (Django's async
  tests), ``sync`` only the others.
* ``VINYL_SUITE_OUT``: a folder for ``results.json`` (each test id's outcome) and
  ``counters-<pid>.json`` (each process's counts of vinyl operations and of Django's
  thread-based a-method calls).

With vinyl in place, each async test method ends by closing vinyl's pools of its event loop
(Django runs each async test on an event loop of its own; a pool belongs to its loop). In every
run, the model signals' receivers are put back as they were after each test (a Django test that
fails before its last line leaves its receiver connected, which would fail the tests after it,
in an order that depends on the parallel workers).
"""

from __future__ import annotations

import functools
import inspect
import json
import multiprocessing.util
import os
import unittest
from pathlib import Path
from typing import Any

from django.db.models import signals as model_signals
from django.test.runner import DiscoverRunner

MODE = os.environ.get("VINYL_SUITE_VINYL", "off")
ONLY = os.environ.get("VINYL_SUITE_ONLY", "")
OUT = Path(os.environ.get("VINYL_SUITE_OUT", ".build/django-suite/out"))


def _tests(suite: Any) -> Any:
    for test in suite:
        if isinstance(test, unittest.TestSuite):
            yield from _tests(test)
        else:
            yield test


def _test_method(test: Any) -> Any:
    return getattr(type(test), getattr(test, "_testMethodName", ""), None)


def _is_async_test(test: Any) -> bool:
    return inspect.iscoroutinefunction(_test_method(test))


# -- every test: the model signals' receivers as they were before it ------------------------------

_MODEL_SIGNALS = [
    getattr(model_signals, name)
    for name in ("pre_init", "post_init", "pre_save", "post_save", "pre_delete", "post_delete",
                 "m2m_changed")
]  # fmt: skip


def _restoring_receivers(run: Any) -> Any:
    """Wrap TestCase.run: a test that fails before it disconnects its receivers (Django's tests
    disconnect at their end, not in a finally) must not fail the tests after it."""

    @functools.wraps(run)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        saved = [(signal, list(signal.receivers)) for signal in _MODEL_SIGNALS]
        try:
            return run(self, *args, **kwargs)
        finally:
            for signal, receivers in saved:
                if signal.receivers != receivers:
                    with signal.lock:
                        signal.receivers = receivers
                        signal.sender_receivers_cache.clear()

    wrapper._harness = True  # type: ignore[attr-defined]
    return wrapper


# -- async tests: vinyl's pools close with the test's event loop ----------------------------------


def _closing_pools(method: Any) -> Any:
    @functools.wraps(method)
    async def test(*args: Any, **kwargs: Any) -> Any:
        import vinyl

        try:
            return await method(*args, **kwargs)
        finally:
            await vinyl.close_pools()

    test._harness = True  # type: ignore[attr-defined]
    return test


# -- results and counters -----------------------------------------------------------------------


class RecordingResult(unittest.TextTestResult):
    """A TextTestResult that also keeps each test id's outcome."""

    outcomes: dict[str, str]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.outcomes = {}

    def _set(self, test: Any, outcome: str) -> None:
        test_id = test.id()
        if self.outcomes.get(test_id) in ("fail", "error"):
            return  # a failed subtest stays failed
        self.outcomes[test_id] = outcome

    def addSuccess(self, test: Any) -> None:
        super().addSuccess(test)
        self._set(test, "pass")

    def addFailure(self, test: Any, err: Any) -> None:
        super().addFailure(test, err)
        self._set(test, "fail")

    def addError(self, test: Any, err: Any) -> None:
        super().addError(test, err)
        # setUpClass errors arrive with a _ErrorHolder whose id names the class.
        self._set(test, "error")

    def addSkip(self, test: Any, reason: str) -> None:
        super().addSkip(test, reason)
        self._set(test, "skip")

    def addExpectedFailure(self, test: Any, err: Any) -> None:
        super().addExpectedFailure(test, err)
        self._set(test, "pass")

    def addUnexpectedSuccess(self, test: Any) -> None:
        super().addUnexpectedSuccess(test)
        self._set(test, "fail")

    def addSubTest(self, test: Any, subtest: Any, err: Any) -> None:
        super().addSubTest(test, subtest, err)
        if err is not None:
            failure = issubclass(err[0], test.failureException)
            self.outcomes[test.id()] = "fail" if failure else "error"


def write_counters() -> None:
    from .install import OPS, THREADED

    OUT.mkdir(parents=True, exist_ok=True)
    data = {"vinyl_ops": dict(OPS), "threaded": dict(THREADED)}
    (OUT / f"counters-{os.getpid()}.json").write_text(json.dumps(data))


def _in_worker(_: Any) -> None:
    # A forked test worker: write its counters when it exits (multiprocessing runs finalizers
    # with an exit priority on a normal exit, atexit handlers not).
    from .install import OPS, THREADED

    OPS.clear()
    THREADED.clear()
    multiprocessing.util.Finalize(None, write_counters, exitpriority=10)


class HarnessRunner(DiscoverRunner):
    """DiscoverRunner that selects, puts vinyl in place and records (see the module docstring)."""

    def get_resultclass(self) -> Any:
        return RecordingResult

    def build_suite(self, *args: Any, **kwargs: Any) -> Any:
        suite = super().build_suite(*args, **kwargs)
        tests = list(_tests(suite))
        if ONLY:
            tests = [t for t in tests if _is_async_test(t) == (ONLY == "async")]
        for test in tests:
            if not getattr(type(test).run, "_harness", False):
                type(test).run = _restoring_receivers(type(test).run)
            if MODE != "off" and _is_async_test(test):
                method = _test_method(test)
                if not getattr(method, "_harness", False):
                    setattr(type(test), test._testMethodName, _closing_pools(method))
        return self.test_suite(tests)

    def run_suite(self, suite: Any, **kwargs: Any) -> Any:
        from . import install

        install.count_threaded_calls()
        if MODE != "off":
            install.install(driven=MODE == "driven")
        multiprocessing.util.register_after_fork(install, _in_worker)
        try:
            result = super().run_suite(suite, **kwargs)
        finally:
            if MODE == "driven":
                install.close_loops()
            write_counters()
        OUT.mkdir(parents=True, exist_ok=True)
        outcomes = getattr(result, "outcomes", {})
        (OUT / "results.json").write_text(json.dumps(outcomes, indent=0, sort_keys=True))
        return result
