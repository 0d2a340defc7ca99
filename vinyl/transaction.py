"""Public path of the transaction API (kept from before the layered packages); it lives in
vinyl.db.transaction."""

from .db.transaction import (
    Atomic,
    atomic,
    get_rollback,
    mark_for_rollback_on_error,
    on_commit,
    set_rollback,
)

__all__ = [
    "Atomic",
    "atomic",
    "get_rollback",
    "mark_for_rollback_on_error",
    "on_commit",
    "set_rollback",
]
