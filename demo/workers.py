"""What the server's worker processes share: the on_commit notification counts.

With ``python -m demo --workers N`` uvicorn runs N processes, each with its own event loop, pools
and counters, and a request for ``/stats`` reaches any one of them. Each process therefore also
writes its counts to ``$DEMO_STATS_DIR/<pid>.json`` (when that is set), and ``/stats`` adds up
every process's file.
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from pathlib import Path


def _folder() -> Path | None:
    folder = os.environ.get("DEMO_STATS_DIR")
    return Path(folder) if folder else None


# The django views' on_commit callbacks run in worker threads: one writer at a time.
_lock = threading.Lock()


def count(counts: Counter[str], key: str) -> None:
    """Add one to ``counts[key]`` and publish the counts (thread-safe)."""
    with _lock:
        counts[key] += 1
        _write(counts)


def publish(counts: Counter[str]) -> None:
    """Write this process's counts for the other processes to read."""
    with _lock:
        _write(counts)


def _write(counts: Counter[str]) -> None:
    folder = _folder()
    if folder is None:
        return
    path = folder / f"{os.getpid()}.json"
    scratch = path.with_suffix(".tmp")
    scratch.write_text(json.dumps(counts))
    os.replace(scratch, path)  # readers see the old file or the new one, never half of one


def collected(own: Counter[str]) -> dict[int, Counter[str]]:
    """Return each worker's counts by pid (this process alone when no folder is shared)."""
    folder = _folder()
    if folder is None:
        return {os.getpid(): Counter(own)}
    return {int(path.stem): Counter(json.loads(path.read_text())) for path in folder.glob("*.json")}
