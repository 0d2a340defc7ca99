"""vinyl: Django's ORM with native async I/O on psycopg 3, one code base for both modes."""

from typing import TYPE_CHECKING, Any

from .flags import async_mode, is_async, reset_async, set_async, sync_mode
from .futures import AwaitableInSyncModeError, gather, later, maybe_async, ready, then

__all__ = [
    "AwaitableInSyncModeError",
    "Cursor",
    "ImplicitQueryError",
    "NPlusOneError",
    "NPlusOneWarning",
    "PoolExhausted",
    "QueryLog",
    "QueryLogMiddleware",
    "SynchronousQueryError",
    "VinylManager",
    "VinylModel",
    "VinylQuerySet",
    "async_mode",
    "atomic",
    "clear_query_cache",
    "close_pools",
    "execute_wrapper",
    "cursor",
    "gather",
    "get_rollback",
    "is_async",
    "later",
    "maybe_async",
    "on_commit",
    "query_cache_disabled",
    "query_cache_info",
    "ready",
    "reset_async",
    "set_async",
    "set_rollback",
    "sync_mode",
    "then",
]

if TYPE_CHECKING:  # what __getattr__ below loads on first use, as type checkers see it
    from .compiler import SynchronousQueryError
    from .db.pool import PoolExhausted, close_pools
    from .db.transaction import atomic, get_rollback, on_commit, set_rollback
    from .model import ImplicitQueryError, VinylManager, VinylModel, VinylQuerySet

# Names that need Django's settings and app registry load on first use, so `import vinyl` works
# anywhere (settings modules included).
_LAZY = {
    "ImplicitQueryError": "model",
    "VinylManager": "model",
    "VinylModel": "model",
    "VinylQuerySet": "model",
    "PoolExhausted": "db.pool",
    "close_pools": "db.pool",
    "execute_wrapper": "db.querylog",
    "NPlusOneError": "db.requestlog",
    "NPlusOneWarning": "db.requestlog",
    "QueryLog": "db.requestlog",
    "QueryLogMiddleware": "db.requestlog",
    "SynchronousQueryError": "compiler",
    "Cursor": "db.cursors",
    "cursor": "db.cursors",
    "clear_query_cache": "compiler.querycache",
    "query_cache_disabled": "compiler.querycache",
    "query_cache_info": "compiler.querycache",
    "atomic": "db.transaction",
    "get_rollback": "db.transaction",
    "on_commit": "db.transaction",
    "set_rollback": "db.transaction",
}


# Submodules reachable as attributes (``vinyl.relations.prepare_related``, as error messages and
# the guide write them), imported on first use like the names above.
_SUBMODULES = {"compat", "compiler", "connection", "db", "model", "relations", "transaction"}


def __getattr__(name: str) -> Any:
    from importlib import import_module

    if name in _SUBMODULES:
        return import_module(f"vinyl.{name}")  # which also sets the attribute
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'vinyl' has no attribute {name!r}")
    value = getattr(import_module(f"vinyl.{module}"), name)
    globals()[name] = value
    return value
