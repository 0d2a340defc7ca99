"""Run every Python code block of the user guide (docs/guide/*.md) against the test database.

Each ```python block is preceded by an HTML comment that says how it runs:

``<!-- run: sync -->``
    executed as it stands, in the test's thread (no event loop: auto mode is sync);
``<!-- run: async -->``
    compiled with top-level ``await`` allowed and run on an asyncio event loop (auto mode is
    async);
``<!-- run: models -->``
    model classes, executed under ``django.test.utils.isolate_apps("tests.testapp")`` (so they
    register nowhere else); a class named like a model of tests/testapp must declare only fields
    that model has, so the text's models are the ones the other blocks use;
``<!-- run: settings -->``
    executed in a namespace of its own; it must define ``DATABASES``, whose aliases are checked
    with vinyl's own reading of the ``"VINYL"`` pool options;
``<!-- run: pytest -->``
    written to a test module under tests/ and run by pytest in a subprocess (it must pass);
``<!-- run: project -->``
    a file of a project made from nothing (any fenced language; the first line is a comment
    naming its path, ``# shop/settings.py``). The page's project files are written to an empty
    folder, with the PostgreSQL server given by ``PG*`` environment variables (``PGDATABASE`` a
    name of this run), and ``python -m pytest`` runs there after the page's other blocks, with
    the project's own configuration and no conftest of vinyl's (it must pass);
``<!-- run: skip (reason) -->``
    not run; at most ``MAX_SKIPS`` in the whole guide, and listed in the test's output.

The blocks of one page share a namespace and run in order, on a database emptied before the
page. A block without a marker fails the test, as does a block that raises.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "guide"
PAGES = sorted(GUIDE.glob("*.md"))
MAX_SKIPS = 3
MODES = ("sync", "async", "models", "settings", "pytest", "project", "skip")

BLOCK = re.compile(
    r"(?:<!--\s*run:\s*(?P<mode>[a-z]+)(?:\s*\((?P<reason>[^)]*)\))?\s*-->\s*\n)?"
    r"```python\n(?P<code>.*?)^```",
    re.S | re.M,
)
PROJECT_FILE = re.compile(
    r"<!--\s*run:\s*project\s*-->\s*\n```[a-z]*\n#\s*(?P<path>[\w./-]+)\n(?P<code>.*?)^```",
    re.S | re.M,
)


def blocks(page: Path) -> list[tuple[int, str | None, str, str]]:
    """Return (line, mode, skip reason, code) of each python block of *page*."""
    text = page.read_text()
    found = []
    for match in BLOCK.finditer(text):
        line = text.count("\n", 0, match.start("code")) + 1
        found.append((line, match.group("mode"), match.group("reason") or "", match.group("code")))
    return found


def test_the_guide_has_pages_and_blocks():
    assert PAGES, f"no guide pages in {GUIDE}"
    assert sum(len(blocks(page)) for page in PAGES) >= 30


def test_every_block_is_marked_and_few_are_skipped():
    skips = []
    for page in PAGES:
        for line, mode, reason, _ in blocks(page):
            where = f"{page.relative_to(ROOT)}:{line}"
            assert mode in MODES, (
                f"{where}: a python block needs <!-- run: {'|'.join(MODES)} (why) -->"
            )
            if mode == "skip":
                assert reason.strip(), f"{where}: a skipped block must say why"
                skips.append(f"{where}: {reason}")
    print("skipped blocks:", *skips, sep="\n  ")
    assert len(skips) <= MAX_SKIPS, skips


def test_every_page_is_linked_from_the_index():
    index = (GUIDE / "README.md").read_text()
    for page in PAGES:
        if page.name != "README.md":
            assert f"({page.name})" in index, f"{page.name} is not linked from the guide's index"
    assert "docs/guide/README.md" in (ROOT / "README.md").read_text()


def _check_settings(namespace: dict, where: str) -> None:
    from vinyl.db.pool import _pool_options

    databases = namespace.get("DATABASES")
    assert isinstance(databases, dict) and databases, f"{where}: the block defines no DATABASES"
    for alias, settings_dict in databases.items():
        assert settings_dict["ENGINE"] == "django.db.backends.postgresql", where
        options = _pool_options(alias, settings_dict)
        from psycopg_pool import AsyncConnectionPool

        accepted = inspect.signature(AsyncConnectionPool).parameters
        unknown = set(settings_dict.get("VINYL") or ()) - set(accepted)
        assert not unknown, f"{where}: AsyncConnectionPool takes no {unknown}"
        assert options["min_size"] <= options["max_size"], where


def _run_models_block(code: str, where: str) -> None:
    from django.apps import apps
    from django.test.utils import isolate_apps

    namespace: dict = {"__name__": "tests.testapp.guide"}
    with isolate_apps("tests.testapp"):
        exec(compile(code, where, "exec"), namespace)
    defined = [v for v in namespace.values() if isinstance(v, type) and hasattr(v, "_meta")]
    assert defined, f"{where}: the block defines no model"
    for model in defined:
        try:
            real = apps.get_model("testapp", model.__name__)
        except LookupError:
            continue
        real_fields = {f.name for f in real._meta.get_fields()}
        missing = {f.name for f in model._meta.local_fields} - real_fields - {"id"}
        assert not missing, f"{where}: testapp's {model.__name__} has no field {missing}"


def _run_pytest_block(code: str, where: str) -> None:
    folder = ROOT / "tests" / f"_guide_{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    try:
        (folder / "__init__.py").write_text("")
        (folder / "test_guide_example.py").write_text(code)
        env = dict(os.environ)
        result = subprocess.run(
            [sys.executable, "-m", "pytest", str(folder), "-q", "-p", "no:cacheprovider"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()
    assert result.returncode == 0, f"{where}: pytest failed\n{result.stdout}\n{result.stderr}"
    summary = result.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "skipped" not in summary, f"{where}: {summary}"


def _run_project(page: Path, tmp: Path) -> None:
    """Write the page's project files to *tmp* and run pytest there (see the module docstring)."""
    from urllib.parse import unquote, urlsplit

    files = [(m.group("path"), m.group("code")) for m in PROJECT_FILE.finditer(page.read_text())]
    if not files:
        return
    for path, code in files:
        target = tmp / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(code)
    url = urlsplit(os.environ["DATABASE_URL"])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PG"))}
    env.update(
        PGHOST=url.hostname or "", PGPORT=str(url.port or 5432),
        PGUSER=unquote(url.username or ""), PGPASSWORD=unquote(url.password or ""),
        PGDATABASE=f"vinyl_guide_{os.getpid()}",
    )  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=tmp, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    where = f"docs/guide/{page.name} (project)"
    assert result.returncode == 0, f"{where}: pytest failed\n{result.stdout}\n{result.stderr}"
    summary = result.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "skipped" not in summary, f"{where}: {summary}"
    assert "failed" not in summary and "error" not in summary, f"{where}: {summary}"


async def _run_on_loop(compiled, namespace: dict) -> None:
    # Evaluated on the loop even without an await, so auto mode is async for the whole block.
    result = eval(compiled, namespace)
    if inspect.iscoroutine(result):
        await result


@pytest.mark.parametrize("page", [p.name for p in PAGES])
def test_page(page, db, tmp_path):
    from vinyl import close_pools

    path = GUIDE / page
    namespace: dict = {"__name__": f"guide_{path.stem.replace('-', '_')}"}
    runner = asyncio.Runner()
    try:
        for line, mode, _, code in blocks(path):
            where = f"docs/guide/{page}:{line}"
            if mode == "sync":
                exec(compile(code, where, "exec"), namespace)
            elif mode == "async":
                compiled = compile(code, where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
                runner.run(_run_on_loop(compiled, namespace))
            elif mode == "models":
                _run_models_block(code, where)
            elif mode == "settings":
                settings_ns: dict = {}
                exec(compile(code, where, "exec"), settings_ns)
                _check_settings(settings_ns, where)
            elif mode == "pytest":
                _run_pytest_block(code, where)
        _run_project(path, tmp_path)
    finally:
        try:
            runner.run(close_pools())
        finally:
            runner.close()
