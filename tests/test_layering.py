"""Layering: only the futures driver and the connection layer import an async framework.

Universal code (compiler, query, model, replay, writes …) waits by yielding maybe-async values and
never touches asyncio or anyio itself; that is what lets the same code run in both modes. The
exceptions, and why each needs the event loop:

* flags: auto mode asks whether a loop runs in this thread (``asyncio._get_running_loop``);
* futures: the async driver (``gather`` runs tasks);
* pool, connection, transaction: psycopg's async pools and connections, locks, shielded release;
* testing: the pytest plugin runs the async half of each test on anyio's runner.
* testdb: in a test run, the test thread's connection and its session (a psycopg AsyncConnection).
* worker: a Django function run in a worker thread hands its queries to the event loop.
"""

import ast
from pathlib import Path

import pytest

VINYL = Path(__file__).resolve().parent.parent / "vinyl"
FRAMEWORKS = {"asyncio", "anyio", "trio", "sniffio"}
ALLOWED = {"flags", "futures", "pool", "connection", "transaction", "testing", "testdb", "worker"}


def async_imports(path: Path) -> set[str]:
    """The async frameworks *path* imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found.update(name.split(".")[0] for name in names if name.split(".")[0] in FRAMEWORKS)
    return found


MODULES = sorted(p for p in VINYL.rglob("*.py"))


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(VINYL).with_suffix("").parts)


@pytest.mark.parametrize("path", MODULES, ids=module_name)
def test_only_the_io_layer_imports_an_async_framework(path):
    name = module_name(path)
    imported = async_imports(path)
    if name not in ALLOWED:
        assert not imported, (
            f"vinyl/{path.relative_to(VINYL)} imports {sorted(imported)}. Universal code waits "
            "by yielding maybe-async values (@maybe_async, later, gather); put what needs the "
            "event loop in the connection layer (vinyl.connection / vinyl.pool) or vinyl.futures."
        )


def test_the_checker_sees_every_form_of_import(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import os\nimport asyncio.events\nfrom anyio import sleep\n"
        "def f():\n    import trio\n    from .asyncio import x\n"
    )
    assert async_imports(sample) == {"asyncio", "anyio", "trio"}


def test_the_allowed_modules_exist():
    # A module renamed away from the list would silently lose its exemption's review.
    assert {module_name(p) for p in MODULES} >= ALLOWED
