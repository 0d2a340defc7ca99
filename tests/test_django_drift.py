"""The drift guard: Django's code that vinyl copies has not changed under the copies.

Every vinyl function marked ``@mirrors("module:Qualified.name", ...)`` (see vinyl.compat)
follows those Django functions. This test fingerprints each one in the installed Django (its
syntax tree without docstring, comments or formatting) and compares it with the fingerprint
stored for that Django minor version in ``tests/django_fingerprints/<major>.<minor>.json``. When
a Django release changes one of them, the test fails and names the vinyl function to re-sync.

After re-syncing the copy (or checking that nothing it mirrors changed), store the new
fingerprints for the installed Django::

    DATABASE_URL=... python -m tests.test_django_drift --write

Each CI leg (Django 5.2 and 6.1) runs this test against its own file.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.util
import json
import pkgutil
import sys
from pathlib import Path

import django

import vinyl
from vinyl.compat import MIRRORS

STORE = Path(__file__).resolve().parent / "django_fingerprints"
VERSION = "{}.{}".format(*django.VERSION[:2])
ABSENT = None  # the fingerprint of a function this Django lacks


def load_vinyl() -> dict[str, tuple[str, ...]]:
    """Import every vinyl module, so that each ``@mirrors`` has registered its copy."""
    for info in pkgutil.walk_packages(vinyl.__path__, "vinyl."):
        importlib.import_module(info.name)
    return MIRRORS


def _without_docstring(body: list[ast.stmt]) -> list[ast.stmt]:
    first = body[0] if body else None
    is_docstring = (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    )
    return body[1:] if is_docstring else body


def _canonical(node: object) -> str:
    # ast.dump() differs between Python versions (3.12's type_params, 3.13 leaves out empty
    # fields): spell the tree without empty fields, and without the docstring.
    if isinstance(node, list):
        return "[" + ",".join(_canonical(item) for item in node) + "]"
    if not isinstance(node, ast.AST):
        return repr(node)
    definition = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
    fields = []
    for name, value in ast.iter_fields(node):
        if name == "body" and definition:
            value = _without_docstring(value)
        if value is None or value == [] or name in ("type_comment", "kind", "type_params"):
            continue
        fields.append(f"{name}={_canonical(value)}")
    return f"{type(node).__name__}({','.join(fields)})"


def _find(body: list[ast.stmt], name: str) -> ast.AST | None:
    """The first class or function called *name* defined in *body* (under if/try blocks too)."""
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            if node.name == name:
                return node
        elif isinstance(node, ast.If | ast.Try | ast.With):
            blocks = [node.body, getattr(node, "orelse", []), getattr(node, "finalbody", [])]
            blocks += [handler.body for handler in getattr(node, "handlers", [])]
            for block in blocks:
                if (found := _find(block, name)) is not None:
                    return found
    return None


def fingerprint(path: str) -> str | None:
    """The fingerprint of Django's ``module:Qualified.name``, or None if this Django lacks it."""
    module, _, qualname = path.partition(":")
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return ABSENT
    node: ast.AST | None = ast.parse(Path(spec.origin).read_text())
    for name in qualname.split("."):
        node = _find(node.body, name) if node is not None else None  # type: ignore[attr-defined]
    if node is None:
        return ABSENT
    return hashlib.sha256(_canonical(node).encode()).hexdigest()[:16]


def stored(version: str = VERSION) -> dict[str, str | None] | None:
    path = STORE / f"{version}.json"
    return json.loads(path.read_text())["fingerprints"] if path.exists() else None


def drift() -> list[str]:
    """What changed between the stored fingerprints and the installed Django, as messages."""
    expected = stored()
    if expected is None:
        return [
            f"No fingerprints stored for Django {VERSION} ({STORE}/{VERSION}.json). Check each "
            "vinyl copy against this Django, then run `python -m tests.test_django_drift --write`."
        ]
    problems = []
    mirrored: dict[str, list[str]] = {}
    for copy, originals in sorted(load_vinyl().items()):
        for original in originals:
            mirrored.setdefault(original, []).append(copy)
    for original, copies in sorted(mirrored.items()):
        now = fingerprint(original)
        if original not in expected:
            problems.append(
                f"{original} is newly mirrored (by {', '.join(copies)}): check the copy against "
                f"Django {VERSION} and store its fingerprint (--write)."
            )
        elif now != expected[original]:
            change = "was removed" if now is None else "changed"
            problems.append(
                f"Django {django.__version__} {change} {original} (fingerprint {now}, stored "
                f"{expected[original]}): re-sync {', '.join(copies)} with it, then store the "
                "new fingerprint (--write)."
            )
    for original in sorted(set(expected) - set(mirrored)):
        problems.append(
            f"{original} is stored but no vinyl function mirrors it any more (--write)."
        )
    return problems


def write() -> Path:
    mirrored = sorted({o for originals in load_vinyl().values() for o in originals})
    path = STORE / f"{VERSION}.json"
    STORE.mkdir(exist_ok=True)
    data = {"django": django.__version__, "fingerprints": {o: fingerprint(o) for o in mirrored}}
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def test_django_has_not_changed_under_vinyls_copies():
    problems = drift()
    assert not problems, "\n".join(problems)


def test_every_mirrored_function_exists_in_some_supported_django():
    # A misspelt path would be fingerprinted as absent everywhere and never guard anything.
    files = [json.loads(p.read_text())["fingerprints"] for p in sorted(STORE.glob("*.json"))]
    assert len(files) >= 2, "fingerprints of each supported Django (5.2 and 6.1) are stored"
    nowhere = [o for o in set().union(*files) if all(f.get(o) is None for f in files)]
    assert not nowhere, f"these exist in no supported Django: {sorted(nowhere)}"


def test_the_fingerprint_ignores_docstrings_and_comments_but_not_code(tmp_path, monkeypatch):
    module = tmp_path / "drift_sample.py"
    monkeypatch.syspath_prepend(str(tmp_path))
    module.write_text('def f(x):\n    """Doc."""\n    return x + 1\n')
    first = fingerprint("drift_sample:f")
    module.write_text("def f(x):\n    # a comment\n    return (x +\n            1)\n")
    assert fingerprint("drift_sample:f") == first
    module.write_text("def f(x):\n    return x + 2\n")
    assert fingerprint("drift_sample:f") != first
    assert fingerprint("drift_sample:g") is None


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python -m tests.test_django_drift --write")
    import os

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    django.setup()
    print(f"wrote {write()}")
