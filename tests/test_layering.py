"""Layering: which vinyl module may import which, as a table; no cycles; no hidden imports.

vinyl is layered, lowest first::

    vinyl.flags  →  vinyl.futures  →  vinyl.db  →  vinyl.compiler  →  vinyl.model  →  vinyl.testing
                 (vinyl.compat: Django's version differences, for db, compiler and model)

A layer imports only from the layers below it (``LAYERS``: each row names what it may import),
and inside a package a module imports only the modules listed before it (``PACKAGES``). Universal
code (compiler, model) waits by yielding maybe-async values and never touches asyncio or anyio
itself; only the rows marked ``ASYNC`` may (flags: auto mode asks whether a loop runs; futures:
the async driver and the cancellation shields; db: psycopg's async pools and connections, locks;
testing: the pytest plugin runs the async half of each test on anyio's runner).

Imports inside functions hide edges from the reader and from this test: a function-level import
of a vinyl module is allowed only when it is listed in ``LATE``, with the reason, and the source
says the same in a comment.

How to add a module:

* a module inside a package (``vinyl/db/replicas.py``): add its name to the package's line in
  ``PACKAGES``, after the modules it imports and before the ones that import it;
* a new top-level module or package (``vinyl/routers.py``): add one line to ``LAYERS`` with what
  it may import (and name it in the row of any layer that imports it);
* then run this file: it names any import that the table does not allow.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

VINYL = Path(__file__).resolve().parent.parent / "vinyl"
ASYNC = "<asyncio/anyio>"  # in a row: the layer may import an async framework
FRAMEWORKS = {"asyncio", "anyio", "trio", "sniffio"}

F, FU, DB, C, M = "vinyl.flags", "vinyl.futures", "vinyl.db", "vinyl.compiler", "vinyl.model"
V = "vinyl.compat"  # Django version switches and the register of copies: Django only

# Each module or package (the most specific row applies) → the vinyl modules/packages it imports.
LAYERS: dict[str, set[str]] = {
    "vinyl.flags": {ASYNC},  # stdlib only (asyncio._get_running_loop for auto mode)
    "vinyl.compat": set(),
    "vinyl.futures": {F, ASYNC},
    "vinyl.db": {F, V, FU, ASYNC},
    "vinyl.compiler": {F, V, FU, DB},
    "vinyl.model": {F, V, FU, DB, C},
    "vinyl.testing": {F, FU, DB, ASYNC, "vinyl.querycount"},
    # Query counts for tests (Django's ensure_connection() refuses to run in an event loop's
    # thread, so it asks whether one runs).
    "vinyl.querycount": {V, ASYNC},
    "vinyl.routers": {F, DB},  # the replica router: the mode and the task's pinned transaction
    "vinyl": {F, FU},  # vinyl/__init__.py; the rest of its names load lazily, by module name
    # Public paths kept from before the packages (docs name them): re-exports only.
    "vinyl.connection": {DB},
    "vinyl.transaction": {DB},
    "vinyl.relations": {M},
}

# Inside a package, its modules lowest first: each may import the ones before it. The package's
# __init__ may import all of them; a module never imports its own package's __init__.
PACKAGES: dict[str, list[str]] = {
    "vinyl.futures": ["driver", "shields"],
    "vinyl.db": [
        "worker",
        "querylog",
        "requestlog",
        "pins",
        "wrapper",
        "pool",
        "connection",
        "transaction",
        "cursors",
        "testdb",
    ],
    "vinyl.compiler": ["tape", "querycache", "compilers", "replay", "query", "statements"],
    "vinyl.model": [
        "errors",
        "signals",
        "evaluation",
        "prefetch",
        "deletion",
        "streaming",
        "raw",
        "writes",
        "queryset",
        "instance",
        "guards",
        "related_writes",
        "relations",
        "base",
    ],
}

# Function-level imports of vinyl modules, each with its reason (the source comments it too).
LATE: dict[tuple[str, str], str] = {
    ("vinyl.db.connection", "vinyl.db.testdb"): (
        "in a test run only: joining the test's transaction builds a transaction Pin, and "
        "transaction builds on connection"
    ),
    ("vinyl.db.transaction", "vinyl.db.testdb"): (
        "in a test run only: testdb builds the test's Pin, so it comes after transaction"
    ),
    ("vinyl.model.writes", "vinyl.model.instance"): (
        "QuerySet.create() saves the object and Model.save() updates through a queryset: a "
        "mutual recursion Django resolves by method dispatch"
    ),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(VINYL.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(VINYL.rglob("*.py"))}


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join([*base, *([node.module] if node.module else [])])


def imports_of(module: str, path: Path) -> list[tuple[str, int, bool]]:
    """``(imported module, line, inside a function)`` for every import in *path*.

    ``from pkg import name`` counts as an import of ``pkg.name`` when that is a module. Imports
    under ``if TYPE_CHECKING:`` are left out (they never run).
    """
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    found: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, late: bool) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child, late)
            return
        if isinstance(node, ast.Import):
            found.extend((alias.name, node.lineno, late) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, is_package, node)
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.append((sub if sub in MODULES else target, node.lineno, late))
        late = late or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        for child in ast.iter_child_nodes(node):
            visit(child, late)

    visit(tree, False)
    return found


def row_of(module: str) -> str | None:
    """The LAYERS row that governs *module*: its own, or its package's ("vinyl" is __init__)."""
    if module in LAYERS:
        return module
    parent = module.rpartition(".")[0]
    return row_of(parent) if parent != "vinyl" else None


def violation(source: str, target: str, late: bool) -> str | None:
    """Why *source* may not import *target*, or None if the tables allow it."""
    if target.split(".")[0] in FRAMEWORKS:
        if ASYNC in LAYERS.get(row_of(source) or "", set()):
            return None
        return (
            f"{source} imports {target}. Universal code waits by yielding maybe-async values "
            "(@maybe_async, later, gather); put what needs the event loop in vinyl.db or "
            "vinyl.futures."
        )
    if target != "vinyl" and not target.startswith("vinyl."):
        return None  # the standard library, Django, psycopg …
    if late and (source, target) not in LATE:
        return (
            f"{source} imports {target} inside a function. Import it at the top of the module "
            "(the layers allow it?), or list it in LATE with the reason and say why in a comment."
        )
    if late:
        return None
    source_row, target_row = row_of(source), row_of(target)
    if source_row is None:
        return f"{source} is in no row of LAYERS: add one line for it (see the module docstring)."
    if source_row == target_row:
        order = PACKAGES.get(source_row)
        if source == source_row:  # a package's __init__ imports its own modules
            return None
        if order is None or target == target_row:
            return f"{source} imports {target}, its own package's __init__: import the module."
        low, high = (name.rpartition(".")[2] for name in (target, source))
        if low not in order or high not in order:
            missing = low if low not in order else high
            return f"{source_row}.{missing} is not in PACKAGES[{source_row!r}]: add it in place."
        if order.index(low) < order.index(high):
            return None
        return f"{source} imports {target}, which PACKAGES[{source_row!r}] lists after it."
    if target_row in LAYERS[source_row]:
        return None
    return (
        f"{source} imports {target}, but LAYERS[{source_row!r}] allows only "
        f"{sorted(r for r in LAYERS[source_row] if r != ASYNC)}: a layer imports only the layers "
        "below it."
    )


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """A cycle of the import graph *edges* (module → modules), or None."""
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_follow_the_table(module):
    problems = [
        f"line {line}: {why}"
        for target, line, late in imports_of(module, MODULES[module])
        if (why := violation(module, target, late))
    ]
    assert not problems, "\n".join(problems)


def test_no_import_cycles():
    edges = {
        module: {t for t, _, late in imports_of(module, path) if t in MODULES and not late}
        for module, path in MODULES.items()
    }
    assert find_cycle(edges) is None, " → ".join(find_cycle(edges) or [])


def test_every_line_of_the_tables_names_a_module():
    # A row left behind by a rename would silently stop governing anything.
    for row in LAYERS:
        assert row in MODULES, f"LAYERS names {row}, which does not exist"
    for package, order in PACKAGES.items():
        inside = {m.rpartition(".")[2] for m in MODULES if m.rpartition(".")[0] == package}
        assert set(order) == inside, f"PACKAGES[{package!r}] must list exactly {sorted(inside)}"
    for source, target in LATE:
        assert any(t == target and late for t, _, late in imports_of(source, MODULES[source]))


def test_the_checker_sees_every_form_of_import(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import os\nimport asyncio.events\nfrom anyio import sleep\nfrom typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from vinyl.model import x\n"
        "def f():\n    import trio\n    from ..db import pool\n"
    )
    found = imports_of("vinyl.compiler.sample", sample)
    assert ("asyncio.events", 2, False) in found and ("anyio", 3, False) in found
    assert ("trio", 8, True) in found and ("vinyl.db.pool", 9, True) in found
    assert not any(t == "vinyl.model" for t, _, _ in found)


def test_the_checker_refuses_what_the_table_does_not_allow():
    assert violation("vinyl.db.pool", "vinyl.compiler.replay", False)  # upwards
    assert violation("vinyl.compiler.query", "anyio", False)  # universal code
    assert violation("vinyl.db.pool", "vinyl.db.connection", False)  # later in the package
    assert violation("vinyl.model.queryset", "vinyl.model", False)  # its own __init__
    assert violation("vinyl.model.instance", "vinyl.model.queryset", True)  # late, unlisted
    assert violation("vinyl.new", "vinyl.flags", False)  # no row
    assert violation("vinyl.db.connection", "vinyl.db.pool", False) is None
    assert violation("vinyl.model.writes", "vinyl.model.instance", True) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}}) is None


def test_the_public_paths_from_before_the_packages_still_work():
    # In a fresh interpreter, so that no earlier import has set the attributes.
    code = (
        "import django; django.setup()\n"
        "import vinyl\n"
        "assert vinyl.relations.prepare_related and vinyl.relations.RelationNotLoaded\n"
        "assert vinyl.transaction.mark_for_rollback_on_error and vinyl.transaction.Atomic\n"
        "assert vinyl.connection.capture_queries and vinyl.connection.run_on\n"
        "from vinyl.compiler import SQLCompiler, call_with_io\n"
        "from vinyl.model import VinylModel, as_vinyl\n"
        "from vinyl.futures import maybe_async\n"
        "from vinyl.flags import set_async\n"
        "import vinyl.testing\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=VINYL.parent, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
