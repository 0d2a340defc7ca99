"""Public path of the connection API (kept from before the layered packages): ``run``,
``run_on``, ``acquire``, the result kinds and ``capture_queries``. They live in vinyl.db."""

from .db.connection import (
    ALL_ROWS,
    CURSOR,
    DESCRIBED,
    MULTI,
    NO_RESULTS,
    ROW_COUNT,
    SINGLE,
    acquire,
    prepare,
    run,
    run_on,
)
from .db.querylog import capture_queries

__all__ = [
    "ALL_ROWS",
    "CURSOR",
    "DESCRIBED",
    "MULTI",
    "NO_RESULTS",
    "ROW_COUNT",
    "SINGLE",
    "acquire",
    "capture_queries",
    "prepare",
    "run",
    "run_on",
]
