"""An async HTTP load client (httpx): N workers hit one implementation for a bounded time."""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx

# What one request of a worker does, and how often.
MIX = {"menu": 40, "order": 35, "status": 20, "report": 5}


@dataclass
class RunResult:
    impl: str
    concurrency: int
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    by_action: dict[str, list[float]] = field(default_factory=dict)
    statuses: Counter[int] = field(default_factory=Counter)
    placed: list[int] = field(default_factory=list)  # ids of orders answered 201
    deliveries: list[int] = field(default_factory=list)  # those of them with an address
    errors: list[str] = field(default_factory=list)  # transport errors and 5xx

    def absorb(self, other: RunResult) -> None:
        """Add the measurements of another run of the same implementation and level."""
        self.seconds += other.seconds
        self.latencies += other.latencies
        for action, latencies in other.by_action.items():
            self.by_action.setdefault(action, []).extend(latencies)
        self.statuses.update(other.statuses)
        self.placed += other.placed
        self.deliveries += other.deliveries
        self.errors += other.errors

    @property
    def requests(self) -> int:
        return len(self.latencies)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, q: float, action: str | None = None) -> float:
        """Return the q-th percentile latency in milliseconds."""
        values = sorted(self.latencies if action is None else self.by_action.get(action, []))
        if not values:
            return float("nan")
        return values[min(len(values) - 1, int(q / 100 * len(values)))] * 1000


def _order_body(rng: random.Random, customers: list[int], dishes: list[int]) -> dict:
    items = [[dish, rng.randint(1, 3)] for dish in rng.sample(dishes, rng.randint(1, 3))]
    body = {"customer": rng.choice(customers), "items": items}
    if rng.random() < 0.3:
        body["address"] = f"{rng.randint(1, 200)} Main Street"
    return body


async def _worker(client, result, prefix, deadline, rng, customers, dishes, record):
    actions, weights = list(MIX), list(MIX.values())
    while time.perf_counter() < deadline:
        action = rng.choices(actions, weights)[0]
        if action == "status" and not result.placed:
            action = "order"
        start = time.perf_counter()
        try:
            if action == "menu":
                response = await client.get(f"{prefix}/dishes")
            elif action == "order":
                body = _order_body(rng, customers, dishes)
                response = await client.post(f"{prefix}/orders", json=body)
            elif action == "status":
                response = await client.get(f"{prefix}/orders/{rng.choice(result.placed)}")
            else:
                response = await client.get(f"{prefix}/report")
        except httpx.HTTPError as exc:
            result.errors.append(f"{action}: {exc!r}")
            continue
        elapsed = time.perf_counter() - start
        if not record:
            continue
        result.latencies.append(elapsed)
        result.by_action.setdefault(action, []).append(elapsed)
        result.statuses[response.status_code] += 1
        if response.status_code >= 500:
            result.errors.append(f"{action}: HTTP {response.status_code} (see the server's log)")
        elif action == "order" and response.status_code == 201:
            placed = response.json()
            result.placed.append(placed["id"])
            if placed["delivery"]:
                result.deliveries.append(placed["id"])
        elif action == "order" and response.status_code != 409:
            result.errors.append(f"order: HTTP {response.status_code} {response.text[:200]}")


async def _progress(result: RunResult, start: float, seconds: float) -> None:
    while True:
        await asyncio.sleep(0.5)
        done = min(seconds, time.perf_counter() - start)
        bar = "#" * int(20 * done / seconds)
        sys.stdout.write(
            f"\r  {result.impl:<6} c={result.concurrency:<3} [{bar:<20}] {done:4.1f}/{seconds:g}s "
            f"{result.requests:6d} requests"
        )
        sys.stdout.flush()


async def run(
    base_url: str,
    impl: str,
    concurrency: int,
    seconds: float,
    customers: list[int],
    dishes: list[int],
    *,
    record: bool = True,
    seed: int = 0,
) -> RunResult:
    """Drive ``/<impl>/…`` with *concurrency* workers for *seconds*; return what was measured."""
    result = RunResult(impl, concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60) as client:
        start = time.perf_counter()
        deadline = start + seconds
        progress = None
        if record and sys.stdout.isatty():
            progress = asyncio.create_task(_progress(result, start, seconds))
        try:
            await asyncio.gather(*(
                _worker(client, result, f"/{impl}", deadline, random.Random(seed * 1000 + i),
                        customers, dishes, record)
                for i in range(concurrency)
            ))  # fmt: skip
        finally:
            result.seconds = time.perf_counter() - start
            if progress is not None:
                progress.cancel()
                sys.stdout.write("\r\033[K")
    return result
