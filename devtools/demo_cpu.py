"""CPU per request of the demo's endpoints, in process (no HTTP): vinyl's views against Django's.

``python -m devtools.demo_cpu [--requests N] [--clients C] [--only menu,order,…] [--profile X]``

Creates a throwaway demo database (``$DATABASE_URL``'s server, else the embedded one), then calls
each view of both copies of the API directly (Django's RequestFactory, the views awaited on one
event loop, *C* at a time), interleaved in rounds, and prints the process CPU (all threads) per
request and the requests per second. The HTTP server's own work is the same for both copies and
left out, so the figures show where the two implementations differ. ``--profile vinyl-menu``
runs only that cell under pyinstrument (or cProfile) and prints the profile.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

ENDPOINTS = ("menu", "order", "status", "report")


def _requests(endpoint, impl, rng, customers, dishes, orders):
    from django.test import RequestFactory

    rf = RequestFactory()
    if endpoint == "menu":
        return rf.get(f"/{impl}/dishes"), ()
    if endpoint == "order":
        items = [[d, rng.randint(1, 3)] for d in rng.sample(dishes, rng.randint(1, 3))]
        body = {"customer": rng.choice(customers), "items": items}
        if rng.random() < 0.3:
            body["address"] = f"{rng.randint(1, 200)} Main Street"
        return rf.post(f"/{impl}/orders", json.dumps(body), content_type="application/json"), ()
    if endpoint == "status":
        return rf.get(f"/{impl}/orders/x"), (rng.choice(orders),)
    return rf.get(f"/{impl}/report"), ()


async def _cell(impl, endpoint, n, clients, rng, customers, dishes, orders):
    from demo.food import django_views, vinyl_views

    views = vinyl_views if impl == "vinyl" else django_views
    view = {
        "menu": views.dishes,
        "order": views.place_order,
        "status": views.order,
        "report": views.report,
    }[endpoint]
    calls = [_requests(endpoint, impl, rng, customers, dishes, orders) for _ in range(n)]
    it = iter(calls)

    async def client():
        for request, args in it:
            response = await view(request, *args)
            if response.status_code >= 500:
                raise RuntimeError(response.content)

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return (time.process_time() - cpu) / n * 1e6, n / (time.perf_counter() - wall)


async def _main(options, customers, dishes, orders) -> None:
    import vinyl
    from demo.food.seed import restock

    rng = random.Random(1)
    only = options.only.split(",") if options.only else ENDPOINTS
    impls = options.impls.split(",")
    cells = [(impl, e) for e in only for impl in impls]
    for impl, e in cells:  # warm up: pools, threads, the query cache
        await _cell(impl, e, 20, options.clients, rng, customers, dishes, orders)
    if options.profile:
        impl, endpoint = options.profile.split("-")
        try:
            from pyinstrument import Profiler
        except ImportError:
            Profiler = None
        if Profiler is not None:
            profiler = Profiler(interval=0.0005, async_mode="disabled")
            profiler.start()
        else:
            import cProfile

            profiler = cProfile.Profile(time.process_time)
            profiler.enable()
        n = options.requests
        await _cell(impl, endpoint, n, options.clients, rng, customers, dishes, orders)
        if Profiler is not None:
            profiler.stop()
            print(profiler.output_text(unicode=False, color=False, show_all=False))
        else:
            import pstats

            profiler.disable()
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(60)
        return
    results: dict[tuple[str, str], list[tuple[float, float]]] = {c: [] for c in cells}
    for r in range(options.rounds):
        await asyncio.to_thread(restock)
        for impl, e in cells if r % 2 == 0 else cells[::-1]:
            results[impl, e].append(
                await _cell(
                    impl, e, options.requests, options.clients, rng, customers, dishes, orders
                )  # fmt: skip
            )
    print(f"{options.clients} client(s), {options.requests} requests x {options.rounds} rounds; "
          "median CPU us/request (all threads) and req/s")  # fmt: skip
    print(f"{'endpoint':<10}{'vinyl us':>10}{'django us':>11}{'cpu d/v':>9}"
          f"{'vinyl r/s':>11}{'django r/s':>12}{'v/d r/s':>9}")  # fmt: skip
    if len(impls) < 2:
        for e in only:
            print(e, impls[0], statistics.median(x[0] for x in results[impls[0], e]))
        return
    for e in only:
        v = results["vinyl", e]
        d = results["django", e]
        vc, dc = statistics.median(x[0] for x in v), statistics.median(x[0] for x in d)
        vr, dr = statistics.median(x[1] for x in v), statistics.median(x[1] for x in d)
        print(f"{e:<10}{vc:>10.0f}{dc:>11.0f}{dc / vc:>9.2f}{vr:>11.0f}{dr:>12.0f}{vr / dr:>9.2f}")
    # The load client's mix (demo/loadtest.py): menu 40, order 35, status 20, report 5.
    mix = {"menu": 40, "order": 35, "status": 20, "report": 5}
    if set(only) == set(ENDPOINTS):
        vm = sum(mix[e] * statistics.median(x[0] for x in results["vinyl", e]) for e in mix) / 100
        dm = sum(mix[e] * statistics.median(x[0] for x in results["django", e]) for e in mix) / 100
        print(f"{'mix':<10}{vm:>10.0f}{dm:>11.0f}{dm / vm:>9.2f}")
    info = vinyl.query_cache_info()
    print(
        f"query cache: {info['hits']} hits, {info['misses']} misses, fallbacks {info['fallbacks']}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.demo_cpu")
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", default="")
    parser.add_argument("--profile", default="", help="e.g. vinyl-menu")
    parser.add_argument("--impls", default="vinyl,django", help="run only these (for py-spy)")
    options = parser.parse_args()

    from demo.__main__ import close_django, demo_database, setup_django
    from devtools.embedded_db import database_url

    with database_url() as server_url, demo_database(server_url) as url:
        setup_django(url)
        from django.core.management import call_command

        from demo.food.models import Customer, Dish, Order
        from demo.food.seed import seed

        call_command("migrate", verbosity=0)
        seed()
        customers = list(Customer.objects.values_list("pk", flat=True))
        dishes = list(Dish.objects.values_list("pk", flat=True))
        try:
            asyncio.run(_prime(customers, dishes))
            orders = list(Order.objects.values_list("pk", flat=True))
            asyncio.run(_main(options, customers, dishes, orders))
        finally:
            close_django()
    return 0


async def _prime(customers, dishes) -> None:
    """Place some orders (for the status endpoint)."""
    rng = random.Random(0)
    await _cell("vinyl", "order", 50, 1, rng, customers, dishes, [])
    await _cell("django", "order", 50, 1, rng, customers, dishes, [])


if __name__ == "__main__":
    sys.exit(main())
