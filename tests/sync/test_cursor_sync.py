"""vinyl.cursor() in sync mode: ``with``, on Django's own connection, cursor and query log."""

import asyncio

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

import vinyl
from tests.helpers import Boom, Outside


def test_with_runs_on_djangos_connection_and_its_query_log(db):
    connection.ensure_connection()
    with CaptureQueriesContext(connection) as queries, vinyl.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid(), %s::int", [5])
        assert cursor.fetchone() == (connection.connection.info.backend_pid, 5)
        cursor.executemany("SELECT %s", [[1], [2]])
    assert cursor.closed
    assert connection.connection is not None  # Django's connection stays open
    assert [q["sql"] for q in queries.captured_queries] == [
        "SELECT pg_backend_pid(), 5::int",
        "2 times: SELECT %s",
    ]


def test_djangos_atomic_and_execute_wrappers_apply(db):
    outside = Outside()
    seen = []

    def wrapper(execute, sql, params, many, context):
        seen.append(sql)
        return execute(sql, params, many, context)

    try:
        with pytest.raises(Boom), transaction.atomic(), connection.execute_wrapper(wrapper):
            with vinyl.cursor() as cursor:
                cursor.execute("INSERT INTO testapp_author (name) VALUES ('a')")
            assert outside.names() == []
            raise Boom
        assert outside.names() == []
        assert seen == ["INSERT INTO testapp_author (name) VALUES ('a')"]
    finally:
        outside.close()


def test_async_with_in_sync_mode_names_with(db):
    async def enter():
        with vinyl.sync_mode():
            async with vinyl.cursor():
                pass

    with pytest.raises(TypeError, match="use `with vinyl.cursor"):
        asyncio.run(enter())
