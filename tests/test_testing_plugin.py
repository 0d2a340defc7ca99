"""vinyl.testing: the both_modes decorator and its pytest plugin, run in inner pytest sessions."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from vinyl.testing import both_modes

ROOT = Path(__file__).resolve().parent.parent


ANYIO_BACKEND = """
    import pytest

    @pytest.fixture(scope="session")
    def anyio_backend():
        return "asyncio"
"""


def run_pytest(tmp_path, source, *args, conftest=ANYIO_BACKEND):
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(source))
    (tmp_path / "conftest.py").write_text(textwrap.dedent(conftest))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PYTEST_ADDOPTS", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-W", "error", "-rA", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc.returncode, proc.stdout + proc.stderr


BODY = """
    import asyncio

    import pytest

    from vinyl import is_async, maybe_async, ready
    from vinyl.testing import both_modes

    SEEN = []

    @pytest.fixture
    def answer():
        return 42

    @maybe_async
    def double(x):
        return 2 * (yield ready(x))

    @both_modes
    def test_modes(answer, vinyl_mode):
        running = asyncio._get_running_loop() is not None
        assert (vinyl_mode, is_async(), running) in [("sync", False, False), ("async", True, True)]
        assert (yield double(answer)) == 84
        with pytest.raises(KeyError):
            yield fail()  # thrown back into the body in both modes
        print(f"RAN {vinyl_mode}")

    @maybe_async
    def fail():
        yield ready(None)
        raise KeyError("x")

    @both_modes
    def test_no_mode_argument(answer):
        assert (yield ready(answer)) == 42

    class TestInAClass:
        @both_modes
        def test_method(self, answer, vinyl_mode):
            assert isinstance(self, TestInAClass)
            assert (yield double(1)) == 2

    @both_modes
    def test_fails_in_async_only(vinyl_mode):
        yield None
        assert vinyl_mode == "sync"
"""


def test_each_test_runs_in_both_modes(tmp_path):
    code, out = run_pytest(tmp_path, BODY, "-p", "vinyl.testing", "-s")
    assert code == 1, out
    for name in ("test_modes", "test_no_mode_argument", "TestInAClass::test_method"):
        assert f"PASSED test_inner.py::{name}[sync]" in out, out
        assert f"PASSED test_inner.py::{name}[async]" in out, out
    assert "PASSED test_inner.py::test_fails_in_async_only[sync]" in out
    assert "FAILED test_inner.py::test_fails_in_async_only[async]" in out
    assert "RAN sync" in out and "RAN async" in out
    assert "1 failed, 7 passed" in out, out


def test_without_the_plugin_the_async_run_names_the_fix(tmp_path):
    code, out = run_pytest(tmp_path, BODY, "-k", "test_no_mode_argument")
    assert code == 1, out
    assert "PASSED test_inner.py::test_no_mode_argument[sync]" in out
    assert "the vinyl.testing pytest plugin is not loaded" in out
    assert "-p vinyl.testing" in out


def test_other_anyio_backends_are_skipped_in_async_mode(tmp_path):
    conftest = """
        import pytest

        @pytest.fixture(params=["asyncio", "trio"])
        def anyio_backend(request):
            return request.param
    """
    code, out = run_pytest(
        tmp_path, BODY, "-p", "vinyl.testing", "-k", "no_mode_argument", conftest=conftest
    )
    assert code == 0, out
    assert "SKIPPED" in out and "psycopg's async API runs on asyncio only" in out
    assert "3 passed, 1 skipped" in out, out


def test_both_modes_needs_a_generator_function():
    with pytest.raises(TypeError, match="@both_modes needs a generator function"):

        @both_modes
        def test_plain():  # pragma: no cover - never collected
            pass
