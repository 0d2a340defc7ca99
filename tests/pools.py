"""Helpers for tests that look at vinyl's async pools."""

from __future__ import annotations

import asyncio

import anyio

from vinyl.db import pool as vinyl_pool


async def pool_settled(alias: str = "default", timeout: float = 5.0) -> dict[str, int]:
    """Wait until every connection of the loop's pool for *alias* is idle in it; return stats."""
    pool = await vinyl_pool.get_pool(alias)
    with anyio.fail_after(timeout):
        while True:
            stats = pool.get_stats()
            if stats["pool_available"] == stats["pool_size"] >= pool.min_size:
                return stats
            await asyncio.sleep(0.01)
