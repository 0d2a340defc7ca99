"""Helpers the test modules share (a test module never imports another test module).

* :func:`reset_tables`: empty every table of the test app and restart its sequences;
* differential writes: run operations with Django's ORM, then with vinyl, and compare the tables
  and the statements (:func:`run_with_django`, :func:`assert_same_as_django` …);
* pools and aliases: :data:`ALIAS` (the reliability tests' alias), :func:`connect_kwargs`,
  :func:`pooled_pids`, :func:`temporary_alias`;
* :class:`Outside`: plain psycopg sessions on the test database, for what other transactions
  see and do; :class:`Boom`, an error a test raises on purpose.

Importable before Django is set up (pytest loads the conftest of a folder named on the command
line before tests/conftest.py sets Django up): what needs the app registry is imported where used.
"""

from __future__ import annotations

import contextlib
import inspect
import time
from collections.abc import Iterator
from typing import Any

import psycopg
from django.apps import apps
from django.db import connection, connections, models
from django.test.utils import CaptureQueriesContext

import vinyl
from vinyl import maybe_async
from vinyl.connection import MULTI, capture_queries, run
from vinyl.db import pool as vinyl_pool
from vinyl.db import wrapper as vinyl_wrapper


def reset_tables() -> None:
    """Empty every testapp table and restart its sequences."""
    app = apps.get_app_config("testapp")
    tables = [m._meta.db_table for m in app.get_models()]
    tables += [f.m2m_db_table() for m in app.get_models() for f in m._meta.local_many_to_many]
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE {} RESTART IDENTITY CASCADE".format(", ".join(f'"{t}"' for t in tables))
        )


# -- differential writes -------------------------------------------------------------------------

VOLATILE = {"created", "modified", "touched"}  # auto_now(_add): differ between two runs


def _rows(model: type[models.Model], rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in VOLATILE} for row in rows]


def django_state(*models_: type[models.Model]) -> dict[str, list[dict]]:
    """The rows of each model's table, read with Django's ORM (sync)."""
    return {m._meta.label: _rows(m, list(m._base_manager.order_by("pk").values())) for m in models_}


@vinyl.maybe_async
def vinyl_state(*models_: type[models.Model]):
    """The rows of each model's table, read with vinyl in the current mode."""
    from vinyl.model import as_vinyl  # defines VinylModel: needs Django set up (see the docstring)

    state = {}
    for m in models_:
        rows = yield as_vinyl(m._base_manager.order_by("pk").values())
        state[m._meta.label] = _rows(m, rows)
    return state


def verbs(sqls: list[str]) -> list[str]:
    """The first word of each data statement (transaction control differs by mode)."""
    words = (sql.split()[0].upper() for sql in sqls)
    return [w for w in words if w in ("SELECT", "INSERT", "UPDATE", "DELETE")]


def run_with_django(ops, models_) -> tuple[dict[str, list[dict]], list[str]]:
    """Run *ops* with Django's ORM; return the tables' state and the statements' verbs.

    The tables are emptied again afterwards, for vinyl's run of the same operations.
    """
    with CaptureQueriesContext(connection) as ctx:
        ops()
    state = django_state(*models_)
    reset_tables()
    return state, verbs([q["sql"] for q in ctx.captured_queries])


@vinyl.maybe_async
def assert_same_as_django(django_result, vinyl_ops, models_):
    """Run *vinyl_ops*; assert the same state and statements as ``run_with_django`` gave."""
    state, statements_run = django_result
    with capture_queries() as log:
        yield vinyl_ops()
    assert (yield vinyl_state(*models_)) == state
    assert verbs([sql for sql, _ in log]) == statements_run


def statements(log: list, verb: str) -> list[str]:
    """The logged statements starting with *verb* (transaction control differs by mode)."""
    return [sql for sql, _ in log if sql.lstrip().upper().startswith(verb)]


# -- pools and aliases ------------------------------------------------------------------------------

ALIAS = "reliability"  # tests/settings.py: the test database, a pool of max_size 10


def connect_kwargs(alias: str = "default") -> dict[str, Any]:
    settings = connections[alias].settings_dict
    return {
        "dbname": settings["NAME"],
        "user": settings["USER"] or None,
        "password": settings["PASSWORD"] or None,
        "host": settings["HOST"] or None,
        "port": settings["PORT"] or None,
    }


async def pooled_pids(alias: str = "default") -> list[int]:
    """Backend pids of the idle connections in the loop's pool (psycopg_pool's deque)."""
    pool = await vinyl_pool.get_pool(alias)
    return [conn.info.backend_pid for conn in list(pool._pool)]


@contextlib.contextmanager
def temporary_alias(alias: str, **settings: Any) -> Iterator[str]:
    """Add a database alias at run time (``settings`` over the default alias's), then remove it.

    ``override_settings(DATABASES=...)`` warns that it is unsafe; this touches only the new alias.
    """
    base = {k: v for k, v in connections["default"].settings_dict.items() if k not in ("TEST",)}
    configured = connections.configure_settings({"default": {**base, **settings}})["default"]
    connections.settings[alias] = configured
    try:
        yield alias
    finally:
        wrapper = getattr(connections._connections, alias, None)
        if wrapper is not None:
            if wrapper.connection is not None:
                wrapper.close()  # sync code only: Django refuses it in an event loop
            delattr(connections._connections, alias)
        del connections.settings[alias]
        vinyl_wrapper._compile_wrappers.pop(alias, None)


# -- other sessions --------------------------------------------------------------------------------


class Boom(Exception):
    pass


class Outside:
    """Plain psycopg sessions on the test database: what other transactions see and do."""

    def __init__(self) -> None:
        settings = connections["default"].settings_dict
        self.kwargs = {
            "dbname": settings["NAME"],
            "user": settings["USER"] or None,
            "password": settings["PASSWORD"] or None,
            "host": settings["HOST"] or None,
            "port": settings["PORT"] or None,
        }
        self.conns: list[psycopg.Connection] = []
        self.conn = self.connect()

    def connect(self, autocommit: bool = True) -> psycopg.Connection:
        conn = psycopg.connect(**self.kwargs, autocommit=autocommit)
        self.conns.append(conn)
        return conn

    def names(self) -> list[str]:
        """The authors' names committed so far, in insertion order."""
        rows = self.conn.execute("SELECT name FROM testapp_author ORDER BY id").fetchall()
        return [name for (name,) in rows]

    def try_lock(self, table: str, where: str, value: object) -> list[tuple]:
        """Lock rows with NOWAIT in a transaction of its own (raises LockNotAvailable)."""
        with self.conn.transaction():
            return self.conn.execute(
                f"SELECT id FROM {table} WHERE {where} = %s FOR UPDATE NOWAIT", [value]
            ).fetchall()

    def hold_lock(self, title: str) -> psycopg.Connection:
        """Open a transaction that keeps book *title* locked until the connection's rollback."""
        conn = self.connect(autocommit=False)
        conn.execute("SELECT id FROM testapp_book WHERE title = %s FOR UPDATE", [title])
        return conn

    def sessions(self, state: str) -> int:
        """Other sessions on the test database in *state* (e.g. 'idle in transaction')."""
        return self.conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND state = %s",
            [state],
        ).fetchone()[0]

    def wait_for_sessions_to_end(self, keep=(), timeout: float = 5.0) -> None:
        """Wait until no other session is on the test database but those whose pid is in *keep*.

        A closed pool's server processes end a moment after their sockets close; a process still
        there after *timeout* is a leak.
        """
        deadline = time.monotonic() + timeout
        while True:
            rows = self.conn.execute(
                "SELECT pid, state, query FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND NOT pid = ANY(%s)",
                [list(keep)],
            ).fetchall()
            if not rows:
                return
            assert time.monotonic() < deadline, f"sessions left on the test database: {rows}"
            time.sleep(0.01)

    def close(self) -> None:
        for conn in self.conns:
            conn.close()


# -- reading in both modes ---------------------------------------------------------------------


@maybe_async
def names(using="default"):
    rows = yield run(using, "SELECT name FROM testapp_author ORDER BY id", None, MULTI)
    return [name for (name,) in rows]


def collect(iterable, vinyl_mode):
    """The items of *iterable* (a sync generator, or an async iterator in async mode)."""
    if vinyl_mode == "sync":
        assert inspect.isgenerator(iterable)
        return list(iterable)

    async def collect():
        return [x async for x in iterable]

    return collect()
