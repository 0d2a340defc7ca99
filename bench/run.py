"""Measure vinyl against Django's ORM and raw psycopg: ``python -m bench [--quick]``.

One run, one database (``vinyl_bench`` or ``$VINYL_BENCH_DB``, created and dropped on the server of ``$DATABASE_URL``,
or of the embedded development server when it is unset). Each (workload, system) cell is warmed
up and calibrated to a batch of about ``--batch-seconds``; then ``--rounds`` rounds run every
cell once, interleaved (the systems' order rotates each round), and the table shows the median
ops/s of each cell, the median CPU time this process spent per operation, and ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import gc
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from . import observe
from . import settings as bench_settings
from .settings import WORKLOADS

SYSTEMS = [
    "vinyl async",
    "vinyl async nc",
    "vinyl sync",
    "vinyl sync nc",
    "django sync",
    "django async",
    "psycopg async",
]
# The targets: (system, baseline) -> (per-query workloads except get, get by pk,
# concurrent I/O); None: no target.
TARGETS = {
    ("vinyl async", "django sync"): (1.0, 1.2, None),
    ("vinyl sync", "django sync"): (None, 1.3, None),
    ("vinyl async", "psycopg async"): (None, None, 0.9),
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="a short run (5 rounds of 0.05 s batches)"
    )
    parser.add_argument("--rounds", type=int, help="measured rounds per cell (default 21)")
    parser.add_argument(
        "--batch-seconds", type=float, help="target duration of one batch (default 0.12)"
    )
    parser.add_argument(
        "--health-checks",
        action="store_true",
        help="set CONN_HEALTH_CHECKS: vinyl's pool tests each connection before lending it",
    )
    parser.add_argument(
        "--observe",
        action="store_true",
        help="measure what watching statements costs (vinyl.db.querylog; see bench/observe.py)",
    )
    parser.add_argument(
        "--server-side-binding",
        action="store_true",
        help="set OPTIONS['server_side_binding'] (Django's and vinyl's cursors bind on the server)",
    )
    parser.add_argument(
        "--prepare-threshold",
        type=int,
        metavar="N",
        help="set OPTIONS['prepare_threshold']: with --server-side-binding, prepare a statement "
        "after N runs on a connection (Django's default: never)",
    )
    parser.add_argument(
        "--only", metavar="WORKLOAD", action="append", help="run only these workloads"
    )
    parser.add_argument(
        "--profile",
        metavar="WORKLOAD",
        help="profile vinyl async on one workload (pyinstrument if installed, wall time; else cProfile, CPU time) "
        "instead of benchmarking",
    )
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (5 if args.quick else 21)
    args.batch_seconds = args.batch_seconds or (0.05 if args.quick else 0.12)
    return args


@contextlib.contextmanager
def server_url() -> Iterator[str]:
    if os.environ.get("DATABASE_URL"):
        yield os.environ["DATABASE_URL"]
        return
    try:
        from devtools.embedded_db import database_url
    except ImportError:
        sys.exit("Set DATABASE_URL (or run from the repository root for the embedded server).")
    with database_url() as url:
        yield url


@contextlib.contextmanager
def bench_database(url: str) -> Iterator[None]:
    """Create the benchmark database on the server of *url*; drop it afterwards."""
    import psycopg

    name = bench_settings.DATABASE_NAME
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def create_schema() -> None:
    from django.db import connection

    from .models import Author, Book
    from .settings import AUTHORS, BOOKS_PER_AUTHOR

    with connection.schema_editor() as editor:
        editor.create_model(Author)
        editor.create_model(Book)
    authors = Author.objects.bulk_create(
        Author(name=f"Author {a}", born=datetime.date(1900 + a, 1 + a % 12, 1 + a % 28))
        for a in range(AUTHORS)
    )
    start = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    Book.objects.bulk_create(
        (
            Book(
                author=author,
                title=f"Book {a}-{b}",
                pages=100 + b,
                price=Decimal(f"{b}.{a % 100:02d}"),
                published=start + datetime.timedelta(hours=a * BOOKS_PER_AUTHOR + b),
            )
            for a, author in enumerate(authors)
            for b in range(BOOKS_PER_AUTHOR)
        ),
        batch_size=2000,
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


class Bench:
    """The systems, the event loop the async ones run on, and the sync worker threads."""

    def __init__(self) -> None:
        from django.db import connections
        from psycopg_pool import AsyncConnectionPool

        from . import workloads as w

        self.w = w
        self.loop = asyncio.new_event_loop()
        self.crew = w.Crew(bench_settings.POOL_SIZE)
        self.pool = AsyncConnectionPool(
            psycopg_conninfo(connections["default"].settings_dict),
            min_size=bench_settings.POOL_SIZE,
            max_size=bench_settings.POOL_SIZE,
            kwargs={"autocommit": True},  # as vinyl's pool: no BEGIN/COMMIT around reads
            open=False,
        )
        self.loop.run_until_complete(self.pool.open(wait=True))
        vinyl_async, vinyl_sync = w.VinylAsync(), w.VinylSync()
        self.systems = {
            s.name: s
            for s in (vinyl_async, w.WithoutQueryCache(vinyl_async), vinyl_sync,
                      w.WithoutQueryCache(vinyl_sync), w.DjangoSync(), w.DjangoAsync(),
                      w.PsycopgAsync(self.pool))
        }  # fmt: skip
        if SYSTEMS == observe.SYSTEMS:
            self.systems.update((v.name, v) for v in observe.variants(self.systems))
        self.counter = 0

    def close(self) -> None:
        from asgiref.sync import sync_to_async
        from django.db import connections

        import vinyl

        self.crew.close()
        self.loop.run_until_complete(vinyl.close_pools())
        self.loop.run_until_complete(self.pool.close())
        # The thread Django's a-methods run in keeps its own connection.
        self.loop.run_until_complete(sync_to_async(connections.close_all)())
        self.loop.run_until_complete(self.loop.shutdown_default_executor())
        self.loop.close()
        connections.close_all()

    def run(self, system: str, workload: str, n: int) -> tuple[float, float]:
        """Run *n* operations; return the seconds they took and this process's CPU seconds."""
        impl = self.systems[system]
        start = self.counter
        self.counter += n * (bench_settings.CONCURRENT_TASKS if workload == "concurrent" else 1)
        with getattr(impl, "batch", contextlib.nullcontext)():
            if impl.is_async:

                async def timed() -> tuple[float, float]:
                    t0, c0 = time.perf_counter(), time.process_time()
                    await self.w.async_batch(impl, workload, start, n)
                    return time.perf_counter() - t0, time.process_time() - c0

                return self.loop.run_until_complete(timed())
            t0, c0 = time.perf_counter(), time.process_time()
            self.w.sync_batch(impl, workload, start, n, self.crew)
            return time.perf_counter() - t0, time.process_time() - c0

    def one(self, system: str, workload: str, i: int) -> Any:
        impl = self.systems[system]
        op = getattr(impl, "request" if workload == "concurrent" else workload)
        if impl.is_async:
            return self.loop.run_until_complete(op(i))
        return op(i)

    def check(self, workloads: list[str]) -> None:
        """Every system returns the same data for the same operation."""
        for workload in workloads:
            kind = "request" if workload == "concurrent" else workload
            answers = {s: self.w.summary(kind, self.one(s, workload, 12345)) for s in SYSTEMS}
            first = answers[SYSTEMS[0]]
            if any(answer != first for answer in answers.values()):
                raise AssertionError(f"systems disagree on {workload}: {answers}")

    def calibrate(self, system: str, workload: str, seconds: float) -> int:
        """Warm up; return the number of operations that takes about *seconds*."""
        n, elapsed = 1, 0.0
        while True:
            elapsed, _ = self.run(system, workload, n)
            if elapsed >= seconds / 4:
                break
            n *= 2
        return max(1, round(n * seconds / elapsed))


def psycopg_conninfo(settings_dict: dict[str, Any]) -> str:
    from psycopg.conninfo import make_conninfo

    parts = {
        "dbname": settings_dict["NAME"],
        "user": settings_dict["USER"],
        "password": settings_dict["PASSWORD"],
        "host": settings_dict["HOST"],
        "port": settings_dict["PORT"],
    }
    return make_conninfo(**{k: v for k, v in parts.items() if v})


class Results:
    """Per (workload, system) cell: median ops/s, spread of the rounds, client CPU per op."""

    def __init__(self) -> None:
        self.rates: dict[tuple[str, str], list[float]] = {}
        self.cpu: dict[tuple[str, str], list[float]] = {}

    def add(self, key: tuple[str, str], ops: int, elapsed: float, cpu: float) -> None:
        self.rates.setdefault(key, []).append(ops / elapsed)
        self.cpu.setdefault(key, []).append(cpu / ops)

    def rate(self, workload: str, system: str) -> float:
        return statistics.median(self.rates[workload, system])

    def spread(self, workload: str, system: str) -> float:
        values = self.rates[workload, system]
        return (max(values) - min(values)) / statistics.median(values)

    def cpu_us(self, workload: str, system: str) -> float:
        return statistics.median(self.cpu[workload, system]) * 1e6


def measure(bench: Bench, workloads: list[str], args: argparse.Namespace) -> Results:
    sizes = {}
    for workload in workloads:
        for system in SYSTEMS:
            sizes[workload, system] = bench.calibrate(system, workload, args.batch_seconds)
    # Whatever exists now lives to the end: out of the collector's way, so that a full collection
    # does not land in one batch (short batches, many rounds: the load of the machine, which
    # changes by the second, is spread over every system alike).
    gc.collect()
    gc.freeze()
    results = Results()
    for r in range(args.rounds):
        order = SYSTEMS[r % len(SYSTEMS) :] + SYSTEMS[: r % len(SYSTEMS)]
        if args.observe:
            # A rotation keeps who runs after whom, and the first async batch after the sync
            # ones runs slower: the variants compared here need every order.
            order = random.Random(r).sample(SYSTEMS, len(SYSTEMS))
        for workload in workloads:
            for system in order:
                n = sizes[workload, system]
                elapsed, cpu = bench.run(system, workload, n)
                per_op = bench_settings.CONCURRENT_TASKS if workload == "concurrent" else 1
                results.add((workload, system), n * per_op, elapsed, cpu)
        print(f"  round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    return results


def report(results: Results, workloads: list[str], args: argparse.Namespace) -> str:
    import django
    import psycopg

    labels = dict(WORKLOADS)
    width = max(len(labels[w]) for w in workloads) + 2
    lines = [
        f"ops/s, median of {args.rounds} interleaved rounds (Python {platform.python_version()}, "
        f"Django {django.get_version()}, psycopg {psycopg.__version__}, "
        f"{os.cpu_count()} CPUs; pool of {bench_settings.POOL_SIZE}"
        f"{', vinyl with CONN_HEALTH_CHECKS' if args.health_checks else ''}"
        f"{', server-side binding' if args.server_side_binding else ''}"
        f"{f', prepare_threshold={args.prepare_threshold}' if args.prepare_threshold is not None else ''})",
        "",
        "".ljust(width) + "".join(f"{s:>17}" for s in SYSTEMS),
    ]
    for w in workloads:
        lines.append(
            labels[w].ljust(width) + "".join(f"{results.rate(w, s):>17,.0f}" for s in SYSTEMS)
        )
    spread = max(results.spread(w, s) for w in workloads for s in SYSTEMS)
    lines += [f"(largest spread of a cell's rounds, (max - min) / median: {spread:.0%})", ""]
    lines.append("client CPU us/op".ljust(width) + "".join(f"{s:>17}" for s in SYSTEMS))
    for w in workloads:
        lines.append(
            labels[w].ljust(width) + "".join(f"{results.cpu_us(w, s):>17,.0f}" for s in SYSTEMS)
        )
    lines.append("")

    if args.observe:
        return "\n".join(lines + observe_ratios(results, workloads, width))
    columns = [
        ("vinyl async", "django sync"),
        ("vinyl async nc", "django sync"),
        ("vinyl async", "django async"),
        ("vinyl async", "psycopg async"),
        ("vinyl sync", "django sync"),
        ("vinyl sync nc", "django sync"),
        ("django async", "psycopg async"),
    ]
    heads = [f"{a.replace('vinyl ', 'v.').replace('django ', 'dj.')}/"
             f"{b.replace('django ', 'dj.').replace('psycopg async', 'pg')}"
             for a, b in columns]  # fmt: skip
    lines.append("ratios".ljust(width) + "".join(f"{h:>17}" for h in heads))
    for w in workloads:
        cells = []
        for a, b in columns:
            ratio = results.rate(w, a) / results.rate(w, b)
            targets = TARGETS.get((a, b), (None, None, None))
            target = targets[2 if w == "concurrent" else 1 if w == "get" else 0]
            mark = "" if target is None else " ok" if ratio >= target else " !!"
            cells.append(f"{ratio:.2f}x{mark:3}".rjust(17))
        lines.append(labels[w].ljust(width) + "".join(cells))
    lines += [
        "",
        "nc: vinyl with its structural query cache switched off (vinyl.query_cache_disabled()).",
        "Targets: vinyl async >= 1.2x Django sync on get by pk and >= 1.0x on the other "
        "per-query workloads, vinyl sync >= 1.3x Django sync on get by pk, vinyl async >= 0.9x "
        "psycopg on concurrent I/O (ok = met, !! = missed).",
        "Concurrent I/O: each request is a get by pk with a 5 ms pg_sleep; async systems run "
        f"{bench_settings.POOL_SIZE} at a time on their pool, sync systems in "
        f"{bench_settings.POOL_SIZE} threads.",
        "",
        cache_report(),
    ]
    return "\n".join(lines)


def cache_report() -> str:
    """vinyl's query cache counters over the whole run (the nc systems do not count)."""
    from vinyl import query_cache_info

    info = query_cache_info()
    fallbacks = ", ".join(f"{n} x {reason}" for reason, n in info["fallbacks"].items())
    return (
        f"vinyl query cache: {info['hits']:,} hits, {info['misses']:,} misses, "
        f"{info['size']} templates (of {info['maxsize']}); fallbacks: {fallbacks or 'none'}"
    )


def observe_ratios(results: Results, workloads: list[str], width: int) -> list[str]:
    labels = dict(WORKLOADS)
    heads = [f"{a} / {b}" for a, b in observe.RATIOS]
    lines = ["ops/s ratios".ljust(width) + "".join(f"{h:>36}" for h in heads)]
    for w in workloads:
        lines.append(
            labels[w].ljust(width)
            + "".join(
                f"{results.rate(w, a) / results.rate(w, b):>35.3f}x" for a, b in observe.RATIOS
            )
        )
    lines.append("CPU us/op ratios".ljust(width) + "".join(f"{h:>36}" for h in heads))
    for w in workloads:
        lines.append(
            labels[w].ljust(width)
            + "".join(
                f"{results.cpu_us(w, a) / results.cpu_us(w, b):>35.3f}x" for a, b in observe.RATIOS
            )
        )
    return lines


def profile(bench: Bench, workload: str, seconds: float = 3.0) -> None:
    n = bench.calibrate("vinyl async", workload, seconds)
    try:
        from pyinstrument import Profiler
    except ImportError:
        import cProfile
        import pstats

        prof = cProfile.Profile(time.process_time)  # CPU time: other processes don't count
        prof.enable()
        bench.run("vinyl async", workload, n)
        prof.disable()
        pstats.Stats(prof).sort_stats("cumulative").print_stats(40)
        pstats.Stats(prof).sort_stats("tottime").print_stats(30)
        return
    profiler = Profiler(interval=0.0002, async_mode="disabled")
    profiler.start()
    bench.run("vinyl async", workload, n)
    profiler.stop()
    print(profiler.output_text(unicode=False, color=False, show_all=False))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    keys = [key for key, _ in WORKLOADS]
    workloads = args.only or keys
    for workload in [*workloads, *([args.profile] if args.profile else [])]:
        if workload not in keys:
            sys.exit(f"Unknown workload {workload!r}; choose from {', '.join(keys)}.")
    if args.observe:
        global SYSTEMS
        SYSTEMS = observe.SYSTEMS
    began = time.perf_counter()
    with server_url() as url, bench_database(url):
        bench_settings.configure(
            url,
            check=args.health_checks,
            server_side_binding=args.server_side_binding,
            prepare_threshold=args.prepare_threshold,
        )
        create_schema()
        bench = Bench()
        try:
            bench.check(workloads)
            if args.profile:
                profile(bench, args.profile)
                return 0
            print(
                f"Measuring {len(workloads)} workloads x {len(SYSTEMS)} systems, "
                f"{args.rounds} rounds ...",
                file=sys.stderr,
                flush=True,
            )
            results = measure(bench, workloads, args)
        finally:
            bench.close()
    print(report(results, workloads, args))
    print(f"({time.perf_counter() - began:.0f} s)")
    return 0
