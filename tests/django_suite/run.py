"""Run Django's own test suite against vinyl: ``python -m tests.django_suite`` (``make django-suite``).

Fetches the source distribution of the installed Django from PyPI (``pip download``; cached under
``.build/django-suite/``), and runs its ``runtests.py`` on selected test apps twice per leg,
Django alone and with vinyl in place (:mod:`tests.django_suite.install`), on PostgreSQL
(``DATABASE_URL``, else the embedded server ``make test`` uses). Legs:

* ``async``: Django's async tests (coroutine test methods) on vinyl's native async path;
* ``sync``: the ORM apps' (sync) tests in sync mode;
* ``driven``: ORM apps' (sync) tests with every vinyl operation run in async mode on an event
  loop.

Then it prints a per-app table (passed tests, Django alone / with vinyl) and fails when a test
that passes with Django alone fails with vinyl without a line in ``expected_differences.txt``, when
a listed test passes with vinyl, or when the counters show vinyl did not run (or Django's
thread-based a-methods did, in the async leg).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import tarfile
import time
from collections import Counter
from pathlib import Path

import django

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CACHE = ROOT / ".build" / "django-suite"
EXPECTED = HERE / "expected_differences.txt"

# Django's async tests: the apps whose coroutine tests use the ORM (directly or through contrib).
ASYNC_APPS = [
    "async", "auth_tests", "sessions_tests", "pagination", "signals", "generic_relations",
    "basic", "get_object_or_404", "select_for_update",
]  # fmt: skip
CORE_APPS = [
    "basic", "lookup", "queries", "many_to_one", "many_to_many", "one_to_one", "select_related",
    "prefetch_related", "aggregation", "annotations", "expressions", "update", "delete",
    "bulk_create", "get_or_create", "ordering", "model_inheritance", "transactions",
]  # fmt: skip
WIDER_APPS = [
    "model_fields", "custom_managers", "custom_lookups", "queryset_pickle", "select_for_update",
    "null_queries", "m2m_through", "reverse_lookup", "distinct_on_fields", "defer",
    "get_earliest_or_latest", "custom_pk", "m2m_regress", "many_to_one_null", "update_only_fields",
    "save_delete_hooks", "force_insert_update", "known_related_objects", "from_db_value",
    "aggregation_regress", "delete_regress", "model_inheritance_regress", "expressions_case",
    "m2m_through_regress", "m2o_recursive", "m2m_recursive", "one_to_one", "raw_query",
    "null_fk", "select_related_onetoone", "select_related_regress", "or_lookups", "proxy_models",
]  # fmt: skip
# The driven leg runs the sync leg's apps but two: their tests hold Django's own transactions and
# row locks around the operations (transaction.atomic(), select_for_update() across threads,
# TransactionTestCase), which vinyl's async-mode operations, run on an event loop with
# connections of their own outside a test's transaction, do not take part in.
DRIVEN_APPS = [
    app for app in dict.fromkeys(CORE_APPS + WIDER_APPS)
    if app not in ("transactions", "select_for_update")
]  # fmt: skip
# Django 5.2 (CI's second leg) runs a smaller selection.
SMALL = {
    "async": ["async", "pagination", "signals", "generic_relations", "basic"],
    "sync": CORE_APPS,
    "driven": ["basic", "lookup", "many_to_one", "many_to_many", "one_to_one", "select_related"],
}

LEGS = {
    # leg: (apps, vinyl mode, async tests only (else sync tests only)). Every leg runs in
    # Django's normal mode (a TestCase's transaction per test): vinyl's async mode takes part in
    # it (vinyl.db.testdb).
    "async": (ASYNC_APPS, "sync", True),
    "sync": (list(dict.fromkeys(CORE_APPS + WIDER_APPS)), "sync", False),
    "driven": (DRIVEN_APPS, "driven", False),
}


# -- Django's tests -----------------------------------------------------------------------------


def django_tests(version: str = django.__version__) -> Path:
    """Return the ``tests`` folder of Django *version*'s sdist (downloaded once, then cached)."""
    target = CACHE / f"django-{version}"
    tests = target / "tests"
    if (tests / "runtests.py").exists():
        return tests
    sdists = CACHE / "sdist"
    sdists.mkdir(parents=True, exist_ok=True)
    archive = sdists / f"django-{version}.tar.gz"
    if not archive.exists():
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary",
             ":all:", f"django=={version}", "-d", str(sdists)],
            check=True,
        )  # fmt: skip
    prefix = f"django-{version}/tests/"
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(prefix)]
        for member in members:
            member.name = member.name[len(f"django-{version}/") :]
        tar.extractall(target, members=members, filter="data")
    return tests


# -- expected differences -----------------------------------------------------------------------


def read_expected(path: Path = EXPECTED) -> dict[tuple[str, str], str]:
    """Map (leg, test id) to the reason of each line ``legs[@version] test.id  reason``."""
    expected = {}
    version = ".".join(django.__version__.split(".")[:2])
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        legs, test_id, reason = line.split(maxsplit=2)
        legs, _, only = legs.partition("@")
        if only and only != version:
            continue
        for leg in legs.split(","):
            expected[(leg, test_id)] = reason
    return expected


# -- running ------------------------------------------------------------------------------------


def run_side(
    tests: Path, leg: str, side: str, apps: list[str], vinyl_mode: str, only_async: bool,
    parallel: int, url: str,
) -> tuple[dict[str, str], dict, float]:  # fmt: skip
    """Run runtests.py once; return (outcomes, summed counters, seconds)."""
    out = CACHE / "out" / django.__version__ / leg / side
    if out.exists():
        for old in out.iterdir():
            old.unlink()
    out.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "VINYL_SUITE_VINYL": vinyl_mode if side == "vinyl" else "off",
        "VINYL_SUITE_ONLY": "async" if only_async else "sync",
        "VINYL_SUITE_OUT": str(out),
        "VINYL_SUITE_RUN_ID": f"{os.getpid()}_{leg}_{side}",
    }
    log = out / "runtests.log"
    start = time.monotonic()
    with log.open("w") as stream:
        subprocess.run(
            [sys.executable, "runtests.py", "--settings=tests.django_suite.settings",
             f"--parallel={parallel}", "--noinput", *apps],
            cwd=tests, env=env, stdout=stream, stderr=subprocess.STDOUT, check=False,
        )  # fmt: skip
    seconds = time.monotonic() - start
    drop_test_databases(url, env["VINYL_SUITE_RUN_ID"])
    results = out / "results.json"
    if not results.exists():
        sys.exit(f"runtests.py did not finish ({leg}, {side}); see {log}")
    counters: dict[str, Counter] = {"vinyl_ops": Counter(), "threaded": Counter()}
    for path in out.glob("counters-*.json"):
        for key, values in json.loads(path.read_text()).items():
            counters[key].update(values)
    return json.loads(results.read_text()), counters, seconds


def drop_test_databases(url: str, run_id: str) -> None:
    """Drop the run's test databases that runtests.py left (it cannot drop one that a pooled
    connection of a test process still holds at its end)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        names = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s", [f"djsuite_{run_id}_%"]
        ).fetchall()
        for (name,) in names:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _app(test_id: str) -> str:
    return test_id.split(".", 1)[0]


def compare(
    leg: str, alone: dict[str, str], vinyl: dict[str, str], expected: dict
) -> tuple[list[list], list[str]]:
    """Return the per-app table rows and the problems (new failures, stale expectations)."""
    rows: dict[str, Counter] = {}
    problems = []
    for test_id in sorted(set(alone) | set(vinyl)):
        a, v = alone.get(test_id, "missing"), vinyl.get(test_id, "missing")
        row = rows.setdefault(_app(test_id), Counter())
        row["tests"] += 1
        row["alone"] += a == "pass"
        row["vinyl"] += v == "pass"
        listed = (leg, test_id) in expected
        if a == "pass" and v != "pass":
            if listed:
                row["expected"] += 1
            else:
                row["new"] += 1
                problems.append(f"{leg}: new failure ({v}): {test_id}")
        elif listed and v == "pass":
            problems.append(f"{leg}: listed in {EXPECTED.name} but passes with vinyl: {test_id}")
    table = [
        [app, c["tests"], c["alone"], c["vinyl"], c["expected"], c["new"]]
        for app, c in sorted(rows.items())
    ]
    return table, problems


def print_table(title: str, table: list[list]) -> None:
    header = ["app", "tests", "Django alone", "with vinyl", "expected diff", "new failures"]
    total = ["total", *(sum(r[i] for r in table) for i in range(1, 6))]
    widths = [max(len(str(r[i])) for r in [header, *table, total]) for i in range(6)]
    print(f"\n{title}")
    for row in [header, None, *table, None, total]:
        if row is None:
            print("-" * (sum(widths) + 2 * 5))
            continue
        print(
            "  ".join(
                str(c).ljust(w) if i == 0 else str(c).rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )


VINYL_CLASSES = ("Vinyl", "Harness", "QuerySetWrites", "InstanceWrites", "RelatedWrites")


def check_counters(leg: str, alone: dict, vinyl: dict) -> list[str]:
    """Problems if vinyl did not run, or Django's threads ran ORM a-methods under vinyl."""
    ops = vinyl["vinyl_ops"]
    by_mode = Counter()
    for key, n in ops.items():
        by_mode[key.split()[0]] += n
    threaded_alone = sum(alone["threaded"].values())
    threaded_vinyl = sum(vinyl["threaded"].values())
    print(
        f"  vinyl operations: {by_mode['sync']:,} sync, {by_mode['async']:,} async; "
        f"Django ORM calls through sync_to_async: {threaded_alone:,} alone, "
        f"{threaded_vinyl:,} with vinyl"
    )
    if threaded_vinyl:
        top = ", ".join(f"{k} x{n}" for k, n in vinyl["threaded"].most_common(8))
        print(f"  threaded with vinyl: {top}")
    problems = []
    if leg == "async":
        if by_mode["async"] == 0:
            problems.append("async: no vinyl operation ran in async mode")
        # What may stay threaded: Django's own code wrapping its sync helpers (generic relation
        # managers' writes, ContentTypeManager.get_for_model, models made inside a test), never
        # vinyl's operations, and at most a tenth of the calls with Django alone.
        own = [k for k in vinyl["threaded"] if k.startswith(VINYL_CLASSES)]
        if own or threaded_vinyl > threaded_alone / 10:
            problems.append(
                f"async: {threaded_vinyl} Django ORM calls still went through sync_to_async"
                + (f", vinyl's own among them: {own}" if own else "")
            )
    elif leg == "sync" and (by_mode["sync"] == 0 or by_mode["async"]):
        problems.append(f"sync: vinyl operations by mode {dict(by_mode)}, expected sync only")
    elif leg == "driven" and (by_mode["async"] == 0 or by_mode["sync"]):
        problems.append(f"driven: vinyl operations by mode {dict(by_mode)}, expected async only")
    return problems


# Reasons for --record, by a pattern of the failure's traceback (checked in order).
REASONS = [
    (
        r"JOIN' unexpectedly found",
        "Django's m2m count()/exists() join optimization applies only when the default manager "
        "is exactly Manager (here the harness's vinyl manager)",
    ),
    (
        r"BulkCreateTransactionTests",
        "Django 6 logs BEGIN/COMMIT of its transactions in the query log; vinyl's async "
        "transactions log their statements only",
    ),
    (
        r"prefetching_iterator_with_chunks",
        "vinyl's async stream holds its server-side cursor in a transaction of its own: BEGIN "
        "and COMMIT are two statements more than Django's WITH HOLD cursor",
    ),
    (
        r"_Operation|never awaited|_Ready",
        "REVIEW (a vinyl bug until shown otherwise): sync code got an awaitable from an "
        "async-mode operation",
    ),
    (
        r"_positional_|_deprecation",
        "Django 5.2's deprecated positional arguments of save()/asave() (gone in Django 6.0): "
        "vinyl's save() takes keywords only",
    ),
    (
        r"test_in_bulk_preserve_ordering_with_batch_size",
        "the test patches Django's connection.features (max_query_params); async mode compiles "
        "on vinyl's own connection wrapper",
    ),
    (
        r"VinylRawQuerySet|HarnessQuerySet\.",
        "a class name in a repr or message (vinyl's queryset class)",
    ),
    (r"cursor_iter_mock", "tests Django internals vinyl does not call (cursor_iter)"),
    (
        r"test_multi_table_inheritance_unsupported",
        "deliberate extension: vinyl's bulk_create supports multi-table inheritance",
    ),
    (
        r"IndexError not raised",
        "vinyl's first()/last() evaluate with _fetch(), not through a custom __iter__",
    ),
]


def _failures(log: Path) -> dict[str, str]:
    """Map test ids to their failure text in a runtests.py log."""
    found = {}
    for block in log.read_text().split("=" * 70)[1:]:
        match = re.match(r"\s*(?:ERROR|FAIL): \S+ \(([^)]+)\)", block)
        if match:
            found.setdefault(match.group(1), "")
            found[match.group(1)] += block
    return found


def record(leg: str, new: list[str], log: Path) -> None:
    """Append a line per new failure to the expected-differences file, with a reason."""
    failures = _failures(log)
    lines = []
    for test_id in new:
        text = failures.get(test_id, "") + test_id
        reason = next((r for p, r in REASONS if re.search(p, text)), "UNCLASSIFIED: review")
        version = ".".join(django.__version__.split(".")[:2])
        lines.append(f"{leg}@{version}  {test_id}  {reason}")
    with EXPECTED.open("a") as stream:
        stream.write("".join(f"{line}\n" for line in lines))


# Apps whose models need PostgreSQL's ICU collations (connection.features.test_collations).
NEEDS_ICU = ["model_fields"]


def has_icu_collations(url: str) -> bool:
    """Whether the server has the ICU collation Django's test models use."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT 1 FROM pg_collation WHERE collname = 'sv-x-icu'").fetchone()
    return row is not None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.django_suite", description=__doc__)
    parser.add_argument("--legs", default="async,sync,driven", help="comma-separated legs")
    parser.add_argument("--small", action="store_true", help="the smaller selection (CI's 5.2)")
    parser.add_argument("--apps", help="comma-separated apps instead of the leg's selection")
    parser.add_argument("--parallel", type=int, default=2, help="runtests.py --parallel")
    parser.add_argument(
        "--record", action="store_true",
        help=f"append the new failures to {EXPECTED.name} with a reason by pattern (review them)",
    )  # fmt: skip
    args = parser.parse_args(argv)

    tests = django_tests()
    expected = read_expected()
    problems: list[str] = []
    with contextlib.ExitStack() as stack:
        url = os.environ.get("DATABASE_URL")
        if not url:
            from devtools.embedded_db import database_url

            url = stack.enter_context(database_url())
        icu = has_icu_collations(url)
        if not icu:
            print(
                f"The server at {url} has no ICU collations (the embedded server is built without "
                f"ICU): skipping {', '.join(NEEDS_ICU)}, whose models use Django's test collation "
                "'sv-x-icu'. Set DATABASE_URL to a server built with ICU to run them."
            )
        for leg in args.legs.split(","):
            apps, vinyl_mode, only_async = LEGS[leg]
            if args.small:
                apps = SMALL[leg]
            if args.apps:
                apps = args.apps.split(",")
            if not icu:
                apps = [app for app in apps if app not in NEEDS_ICU]
            sides = {}
            for side in ("alone", "vinyl"):
                sides[side] = run_side(
                    tests, leg, side, apps, vinyl_mode, only_async, args.parallel, url
                )
            table, found = compare(leg, sides["alone"][0], sides["vinyl"][0], expected)
            print_table(
                f"Django {django.__version__}, leg {leg}: passed tests "
                f"[{sides['alone'][2]:.0f} s alone, {sides['vinyl'][2]:.0f} s with vinyl]",
                table,
            )
            if args.record:
                new = [p.rsplit(": ", 1)[1] for p in found if ": new failure" in p]
                record(
                    leg, new, CACHE / "out" / django.__version__ / leg / "vinyl" / "runtests.log"
                )
                found = [p for p in found if ": new failure" not in p]
            problems += found
            problems += check_counters(leg, sides["alone"][1], sides["vinyl"][1])
    listed_ids = {re.sub(r"\s.*", "", k[1]) for k in expected}
    print(f"\n{len(expected)} expected differences listed ({len(listed_ids)} tests).")
    for problem in problems:
        print(f"PROBLEM {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
