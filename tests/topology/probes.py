"""What tests/topology sees of PgBouncer's server connections: probes of every server
connection's session state, and a watch of SHOW POOLS while a block runs."""

from __future__ import annotations

import threading
import time

# What a client sees of the session it runs on: a transaction left open (now() frozen), a
# transaction-local setting left behind, session state transaction pooling cannot carry
# (prepared statements, held cursors, LISTEN, advisory locks), the time zone.
PROBE = (
    "SELECT now() = statement_timestamp(), current_setting('vinyl.leftover', true), "
    "(SELECT count(*) FROM pg_prepared_statements) + (SELECT count(*) FROM pg_cursors) "
    "+ (SELECT count(*) FROM pg_listening_channels()) + (SELECT count(*) FROM pg_locks "
    "WHERE locktype = 'advisory' AND pid = pg_backend_pid()), "
    "current_setting('TimeZone'), pg_backend_pid(), pg_sleep(%s)"
)


def probe_all(bouncer, seconds: float = 0.3, sql: str = PROBE) -> list[tuple]:
    """Run *sql* (with pg_sleep(seconds) in it) on every server connection of the pool at once:
    5 clients, each holding one server connection."""
    import psycopg

    results: list[tuple] = []

    def one() -> None:
        with psycopg.connect(host="127.0.0.1", port=bouncer.port, user="postgres",
                             dbname="vinyl_topology", autocommit=True,
                             cursor_factory=psycopg.ClientCursor) as conn:  # fmt: skip
            results.append(conn.execute(sql, [seconds]).fetchone())

    threads = [threading.Thread(target=one) for _ in range(bouncer.pool_size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def assert_servers_clean(bouncer) -> None:
    """Every server connection idle, and a client on each sees no leftover of a previous one."""
    deadline = time.monotonic() + 5
    while any(s["state"] != "idle" for s in bouncer.servers()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert all(s["state"] == "idle" for s in bouncer.servers()), bouncer.servers()
    probes = probe_all(bouncer)
    assert len({pid for *_, pid, _ in probes}) == len(probes)  # one probe per server connection
    for fresh_transaction, leftover, session_state, _, _, _ in probes:
        assert fresh_transaction is True
        assert leftover in (None, "")
        assert session_state == 0


class ServerWatch:
    """Samples PgBouncer's SHOW POOLS in a thread: the most server connections and waiting
    clients seen while the block ran."""

    def __init__(self, bouncer) -> None:
        self.bouncer = bouncer
        self.max_servers = 0
        self.max_waiting = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            pool = self.bouncer.pool()
            if pool:
                servers = sum(int(pool[k]) for k in ("sv_active", "sv_idle", "sv_used",
                                                     "sv_tested", "sv_login"))  # fmt: skip
                self.max_servers = max(self.max_servers, servers)
                self.max_waiting = max(self.max_waiting, int(pool["cl_waiting"]))
                self.samples += 1
            time.sleep(0.01)

    def __enter__(self) -> ServerWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
