import asyncio

import pytest
from django.db import connection as django_connection


@pytest.fixture
def django_pid(db):
    """The server process of Django's own connection (the db fixture closes it)."""
    django_connection.ensure_connection()
    return django_connection.connection.info.backend_pid


@pytest.fixture
async def outside(django_pid):
    """Sessions outside vinyl; afterwards, the pool and the server must be left clean.

    Every pooled connection idle in the pool, working and outside a transaction; no session of
    the test database active (no cancelled statement still running) or idle in a transaction.
    """
    from tests.helpers import Outside
    from tests.pools import pool_settled
    from vinyl.db.pool import close_pools, get_pool

    sessions = Outside()
    try:
        yield sessions
        stats = await pool_settled()
        assert stats["pool_size"] <= stats["pool_max"]
        assert sessions.sessions("idle in transaction") == 0
        assert sessions.sessions("idle in transaction (aborted)") == 0
        assert sessions.sessions("active") == 0  # no cancelled query still running
        pool = await get_pool("default")
        pids = await asyncio.gather(*(_status() for _ in range(pool.max_size)))
        assert all(status == "idle" for status in pids)
    finally:
        await close_pools()
        try:
            sessions.wait_for_sessions_to_end(keep=[django_pid])
        finally:
            sessions.close()


async def _status():
    from vinyl.connection import SINGLE, run

    row = await run(
        "default",
        "SELECT CASE WHEN now() = statement_timestamp() THEN 'idle' ELSE 'in transaction' END",
        None,
        SINGLE,
    )
    return row[0]
