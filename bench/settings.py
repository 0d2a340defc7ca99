"""The benchmark's parameters and Django settings (one PostgreSQL database, the ``bench`` app)."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import unquote, urlsplit

DATABASE_NAME = os.environ.get("VINYL_BENCH_DB", "vinyl_bench")
POOL_SIZE = 10
AUTHORS = 100
BOOKS_PER_AUTHOR = 100
BOOKS = AUTHORS * BOOKS_PER_AUTHOR
CONCURRENT_TASKS = 50
NAP_SECONDS = 0.005

#: (key, label) of each workload, in the order of the table.
WORKLOADS = [
    ("get", "get by pk"),
    ("filter", "filter -> 100 objects"),
    ("values", "values_list -> 100 rows"),
    ("join", "select_related, 50 rows"),
    ("count", "count + aggregate"),
    ("concurrent", f"concurrent I/O, {CONCURRENT_TASKS} tasks (req/s)"),
]


def database(
    url: str, name: str = DATABASE_NAME, check: bool = False, **options: Any
) -> dict[str, Any]:
    """Django's DATABASES entry for database *name* on the server of *url*.

    *check* sets CONN_HEALTH_CHECKS, with which vinyl's pool tests each connection it lends (one
    round trip); raw psycopg's pool in the benchmark makes no such test. *options* go to OPTIONS
    (``server_side_binding``, ``prepare_threshold``: Django's and vinyl's alike).
    """
    pool: dict[str, Any] = {"min_size": POOL_SIZE, "max_size": POOL_SIZE, "timeout": 30}
    parts = urlsplit(url)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
        # vinyl's async pool: the same size as the raw psycopg pool it is compared with.
        "VINYL": pool,
        "CONN_HEALTH_CHECKS": check,
        "OPTIONS": options,
    }


def configure(
    url: str,
    check: bool = False,
    server_side_binding: bool = False,
    prepare_threshold: int | None = None,
) -> None:
    """Configure Django for the benchmark database on the server of *url* and set it up."""
    options: dict[str, Any] = {}
    if server_side_binding:
        options["server_side_binding"] = True
    if prepare_threshold is not None:
        options["prepare_threshold"] = prepare_threshold
    import django
    from django.conf import settings

    settings.configure(
        DEBUG=False,  # no query log
        DATABASES={"default": database(url, check=check, **options)},
        INSTALLED_APPS=["bench"],
        USE_TZ=True,
        TIME_ZONE="Europe/Amsterdam",
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        SECRET_KEY="vinyl-bench",
    )
    django.setup()
