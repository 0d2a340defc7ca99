"""``python -m demo``: serve the food-ordering service with uvicorn and load-test it.

1. Find PostgreSQL (``$DATABASE_URL``, else an embedded server from devtools.embedded_db), create a
   fresh database for the demo, migrate and seed it.
2. Start uvicorn in a subprocess on 127.0.0.1 (a free port), serving both copies of the API:
   ``/vinyl/…`` (vinyl) and ``/django/…`` (Django's own async methods).
3. Drive each copy with an httpx load client for a few seconds at several concurrency levels,
   check the database after each run (stock conserved and never negative, every committed order
   complete, one on_commit notification per order), and print a table.
4. Run the ``kitchen_report`` management command in sync mode (the same service functions), stop
   the server, drop the database and stop the embedded server.

Other entry points: ``python -m demo manage <command> …`` runs a Django management command of the
demo project (``kitchen_report``, ``migrate``, ``seed`` …) against ``$DATABASE_URL`` — or, without
it, against a throwaway embedded database that is migrated and seeded first. ``python -m demo
serve --fd N`` is the server subprocess.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from devtools.embedded_db import database_url  # noqa: E402

LEVELS = (1, 10, 50)


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@contextlib.contextmanager
def demo_database(server_url: str) -> Iterator[str]:
    """Create a fresh database for this run on *server_url*; drop it afterwards."""
    import psycopg

    name = f"vinyl_demo_{os.getpid()}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(server_url, name)
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def setup_django(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ["DJANGO_SETTINGS_MODULE"] = "demo.settings"
    import django

    django.setup()


def close_django() -> None:
    from django.db import connections

    for conn in connections.all(initialized_only=True):
        conn.close()
        conn.close_pool()


@contextlib.contextmanager
def running_server(env: dict[str, str], workers: int = 1) -> Iterator[str]:
    """Run uvicorn in a subprocess on a free port of 127.0.0.1; yield its base URL.

    With *workers* > 1, uvicorn's supervisor runs that many worker processes on the one
    listening socket, each with its own event loop and so its own pools.
    """
    import tempfile

    import httpx

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    port = sock.getsockname()[1]
    fd = sock.fileno()
    stats = tempfile.TemporaryDirectory(prefix="vinyl-demo-stats-")
    if workers > 1:  # the workers share their on_commit counts through files (demo/workers.py)
        env = {**env, "DEMO_STATS_DIR": stats.name}
    command = [sys.executable, "-m", "demo", "serve", "--fd", str(fd), "--workers", str(workers)]
    proc = subprocess.Popen(command, pass_fds=[fd], env=env, cwd=ROOT)
    sock.close()  # the child holds the listening socket now
    base_url = f"http://127.0.0.1:{port}"
    try:
        # Connections wait in the socket's backlog until the server accepts them.
        deadline = time.monotonic() + 30
        while True:
            try:
                up = httpx.get(f"{base_url}/stats", timeout=30).raise_for_status().json()
            except httpx.HTTPError as exc:
                raise RuntimeError(
                    f"the demo server did not start (exit code {proc.poll()}); see its output above"
                ) from exc
            if len(up["workers"]) >= workers:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(up['workers'])} of {workers} workers started")
            time.sleep(0.1)
        yield base_url
    finally:
        stats.cleanup()
        proc.terminate()  # SIGTERM: uvicorn shuts down gracefully (lifespan closes the pools)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def serve(fd: int, workers: int = 1) -> None:
    import uvicorn

    sock = socket.socket(fileno=fd)
    config = uvicorn.Config(
        "demo.asgi:application", log_level="warning", access_log=False, lifespan="on",
        workers=workers,
    )  # fmt: skip
    if workers > 1:
        from uvicorn.supervisors import Multiprocess

        Multiprocess(config, sockets=[sock]).run()  # what uvicorn.run(workers=N) does
    else:
        uvicorn.Server(config).run(sockets=[sock])


# -- checking the database after a run -----------------------------------------------------------


def snapshot() -> dict:
    from django.db.models import Max

    from demo.food.models import Dish, Order

    return {
        "stock": dict(Dish.objects.values_list("pk", "stock")),
        "last_order": Order.objects.aggregate(m=Max("pk"))["m"] or 0,
    }


def check_run(result, before: dict, notified: int) -> list[str]:
    """Return what is wrong in the database after *result*'s run (an empty list when all is)."""
    from collections import defaultdict
    from decimal import Decimal

    from demo.food.models import DeliveryOrder, Dish, Order, OrderLine

    problems = []
    orders = dict(Order.objects.filter(pk__gt=before["last_order"]).values_list("pk", "total"))
    sources = set(
        Order.objects.filter(pk__gt=before["last_order"]).values_list("source", flat=True)
    )
    if sources - {result.impl}:
        problems.append(f"orders from {sources - {result.impl}} appeared during the run")
    if set(orders) != set(result.placed):
        problems.append(
            f"{len(result.placed)} orders answered 201 but {len(orders)} are in the database"
        )
    line_totals: dict[int, Decimal] = defaultdict(Decimal)
    sold: Counter[int] = Counter()
    for order_id, dish_id, quantity, price in OrderLine.objects.filter(
        order_id__gt=before["last_order"]
    ).values_list("order_id", "dish_id", "quantity", "unit_price"):
        line_totals[order_id] += quantity * price
        sold[dish_id] += quantity
    incomplete = [pk for pk, total in orders.items() if line_totals.get(pk) != total]
    if incomplete:
        problems.append(f"{len(incomplete)} orders without their lines or with a wrong total")
    deliveries = DeliveryOrder.objects.filter(pk__gt=before["last_order"]).values_list("pk")
    if {pk for (pk,) in deliveries} != set(result.deliveries):
        problems.append("the delivery orders (multi-table rows) differ from those answered")
    for pk, stock in Dish.objects.values_list("pk", "stock"):
        if stock < 0:
            problems.append(f"dish {pk} has a negative stock ({stock})")
        elif stock != before["stock"][pk] - sold[pk]:
            problems.append(f"dish {pk}: stock {stock}, expected {before['stock'][pk] - sold[pk]}")
    if notified != len(orders):
        problems.append(f"{notified} on_commit notifications for {len(orders)} committed orders")
    return problems


# -- the demo -----------------------------------------------------------------------------------


def server_stats(base_url: str) -> dict:
    """The server's counters: on_commit notifications per source, vinyl's query cache."""
    import httpx

    return httpx.get(f"{base_url}/stats").json()


def notified(base_url: str, impl: str) -> int:
    return server_stats(base_url)["notified"].get(impl, 0)


def print_table(results) -> None:
    header = (
        f"{'implementation':<15}{'clients':>8}{'requests':>10}{'req/s':>9}{'p50 ms':>9}"
        f"{'p99 ms':>9}{'orders':>8}{'refused':>9}{'errors':>8}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r.impl:<15}{r.concurrency:>8}{r.requests:>10}{r.rate:>9.0f}"
            f"{r.percentile(50):>9.1f}{r.percentile(99):>9.1f}"
            f"{len(r.placed):>8}{r.statuses[409]:>9}{len(r.errors):>8}"
        )
    print()
    actions = ("menu", "order", "status", "report")
    print(f"{'p50 / p99 ms by endpoint':<24}" + "".join(f"{a:>16}" for a in actions))
    for r in results:
        cells = "".join(
            f"{f'{r.percentile(50, a):.1f} / {r.percentile(99, a):.1f}':>16}" for a in actions
        )
        print(f"{r.impl:<15}{r.concurrency:>3} clients{cells}")
    by_key = {(r.impl, r.concurrency): r for r in results}
    ratios = [
        f"{c} client(s): x{by_key['vinyl', c].rate / by_key['django', c].rate:.2f}"
        for c in sorted({r.concurrency for r in results})
        if by_key.get(("django", c)) and by_key["django", c].rate
    ]
    print("vinyl / django requests per second: " + ", ".join(ratios))


def measure(base_url, levels, seconds, customers, dishes):
    """Load-test both implementations at each level; return the results and the problems found.

    Each implementation gets *seconds* per level, in two halves run in the order A B B A, so a
    drift of the machine's load (other processes, the growing orders table) hits both alike.
    Before each half the stock is reset; after it the database is checked.
    """
    from demo import loadtest
    from demo.food.seed import restock

    for impl in ("vinyl", "django"):  # warm up the pools and threads, unmeasured
        asyncio.run(loadtest.run(base_url, impl, 10, 1, customers, dishes, record=False))
    results, problems = [], []
    for i, level in enumerate(levels):
        first, second = ("vinyl", "django") if i % 2 == 0 else ("django", "vinyl")
        merged = {impl: loadtest.RunResult(impl, level) for impl in (first, second)}
        for half, impl in enumerate((first, second, second, first)):
            restock()
            before, count = snapshot(), notified(base_url, impl)
            result = asyncio.run(loadtest.run(
                base_url, impl, level, seconds / 2, customers, dishes, seed=i * 4 + half))  # fmt: skip
            found = check_run(result, before, notified(base_url, impl) - count)
            errors = Counter(result.errors).most_common(3)
            found += [f"{error} (x{n})" for error, n in errors]
            problems += [f"{impl} c={level}: {p}" for p in found]
            merged[impl].absorb(result)
        for impl in (first, second):
            result = merged[impl]
            results.append(result)
            print(f"  {impl:<6} c={level:<3} {result.requests:6d} requests, "
                  f"{result.rate:6.0f}/s, p99 {result.percentile(99):6.1f} ms, "
                  f"{len(result.placed)} orders")  # fmt: skip
    return results, problems


def run_demo(levels: tuple[int, ...], seconds: float, workers: int = 1) -> int:
    started = time.perf_counter()
    print("vinyl demo: a food-ordering service on Django + vinyl, served by uvicorn")
    with database_url() as server_url:
        where = "DATABASE_URL" if os.environ.get("DATABASE_URL") else "embedded PostgreSQL"
        with demo_database(server_url) as url:
            setup_django(url)
            from django.core.management import call_command

            from demo.food.models import Customer, Dish
            from demo.food.seed import seed

            call_command("migrate", verbosity=0)
            seed()
            customers = list(Customer.objects.values_list("pk", flat=True))
            dishes = list(Dish.objects.values_list("pk", flat=True))
            print(f"Database {urlsplit(url).path[1:]} on {where}: migrated and seeded "
                  f"({len(dishes)} dishes, {len(customers)} customers).")  # fmt: skip
            env = {**os.environ, "DATABASE_URL": url, "PYTHONPATH": str(ROOT)}
            try:
                with running_server(env, workers) as base_url:
                    from demo.settings import POOL_SIZE

                    processes = f"{workers} worker processes" if workers > 1 else "one process"
                    print(f"Server: uvicorn at {base_url} (/vinyl/… and /django/…), "
                          f"{processes}, pools of {POOL_SIZE} per process and implementation. "
                          f"Load: {seconds:g} s per implementation and concurrency level.")  # fmt: skip
                    results, problems = measure(base_url, levels, seconds, customers, dishes)
                    stats = server_stats(base_url)
                    cache = stats["query_cache"]  # with several workers: the one that answered
                    if workers > 1:
                        served = stats["workers"]
                        print("Orders announced by each worker process: " + ", ".join(
                            f"pid {pid}: {n}" for pid, n in served.items()))  # fmt: skip
                        if min(served.values()) == 0:
                            problems.append(f"a worker process placed no order: {served}")
            finally:
                close_django()
            print()
            print_table(results)
            if problems:
                print("\nCorrectness check FAILED:")
                for problem in problems:
                    print(f"  - {problem}")
            else:
                total = sum(len(r.placed) for r in results)
                print(f"\nCorrectness check OK: {total} committed orders, each with its lines and "
                      "total; stock conserved and never negative; one on_commit notification per "
                      "order; no server errors.")  # fmt: skip
            fallbacks = ", ".join(f"{n} x {why}" for why, n in cache["fallbacks"].items())
            print(f"vinyl's query cache in the server: {cache['hits']:,} hits, "
                  f"{cache['misses']:,} misses, {cache['size']} templates; fallbacks: "
                  f"{fallbacks or 'none'}")  # fmt: skip
            print("\n$ python -m demo manage kitchen_report --cook 20   (sync mode, same services)")
            call_command("kitchen_report", cook=20)
            close_django()
    print(f"\nDone in {time.perf_counter() - started:.0f} s; server and database stopped.")
    return 1 if problems else 0


def manage(args: list[str]) -> int:
    from django.core.management import call_command, execute_from_command_line

    with contextlib.ExitStack() as stack:
        if os.environ.get("DATABASE_URL"):
            setup_django(os.environ["DATABASE_URL"])
        else:
            url = stack.enter_context(demo_database(stack.enter_context(database_url())))
            stack.callback(close_django)
            setup_django(url)
            call_command("migrate", verbosity=0)
            call_command("seed")
        execute_from_command_line(["python -m demo manage", *args])
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["manage"]:
        return manage(argv[1:])
    if argv[:1] == ["serve"]:
        parser = argparse.ArgumentParser(prog="python -m demo serve")
        parser.add_argument("--fd", type=int, required=True)
        parser.add_argument("--workers", type=int, default=1)
        options = parser.parse_args(argv[1:])
        serve(options.fd, options.workers)
        return 0
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each run")
    parser.add_argument(
        "--levels", default=",".join(map(str, LEVELS)), help="concurrency levels, e.g. 1,10,50"
    )
    parser.add_argument(
        "--workers", type=int, default=1,
        help="uvicorn worker processes, each with its own pools (default 1)",
    )  # fmt: skip
    options = parser.parse_args(argv)
    if options.workers < 1:
        parser.error("--workers must be 1 or more")
    levels = tuple(int(level) for level in options.levels.split(","))
    return run_demo(levels, options.seconds, options.workers)


if __name__ == "__main__":
    sys.exit(main())
