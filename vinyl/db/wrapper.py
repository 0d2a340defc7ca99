"""The compile-only connection: Django's DatabaseWrapper for SQL generation in async mode.

``sql_connection(alias)`` is the connection Django compiles a query against: Django's own
``connections[alias]`` in sync mode (it also runs the query), and in async mode a wrapper of the
alias's backend class that shares Django's operations, features and quoting but never connects.
Its ``compiler_module`` is ``vinyl.compiler``, so Django code that compiles a query with it
(see vinyl.compiler.replay) reaches vinyl's execution path.
"""

from __future__ import annotations

import threading
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.db.backends.postgresql.base import DatabaseWrapper as PGDatabaseWrapper
from django.db.utils import ConnectionDoesNotExist, load_backend

from ..flags import is_async
from .pins import current_pin

__all__ = ["compile_wrapper", "is_postgresql", "sql_connection"]


def _compile_wrapper_class(backend_class: type) -> type:
    ops_class = type(
        "VinylOperations", (backend_class.ops_class,), {"compiler_module": "vinyl.compiler"}
    )

    class CompileWrapper(backend_class):  # type: ignore[misc, valid-type]
        """Django's DatabaseWrapper for SQL generation in async mode; it never connects.

        Its operations use vinyl's compilers (``compiler_module``), so Django code that compiles
        a query with it (see vinyl.compiler.replay) reaches vinyl's execution path.
        """

        def get_autocommit(self) -> bool:
            return current_pin(self.alias) is None  # the pinned transaction decides

        def ensure_connection(self) -> None:
            raise RuntimeError(
                f"Django's own connection for alias {self.alias!r} was asked for (a cursor, "
                "transaction.atomic()) by sync code that vinyl runs in its worker thread for an "
                "async-mode operation (a save() override, a signal's sync receiver, on_delete="
                "SET(callable)): only ORM queries reach the calling task there. Use the ORM, "
                "or run the operation in sync mode (vinyl.sync_mode()). Without such code, "
                "this is a vinyl bug: please report it."
            )

    CompileWrapper.ops_class = ops_class

    return CompileWrapper


_compile_wrappers: dict[str, Any] = {}
_wrapper_lock = threading.Lock()


def sql_connection(alias: str) -> Any:
    """Return the DatabaseWrapper that compiles SQL for *alias* in the current mode.

    Sync mode: Django's own connection (it also runs the query). Async mode: a wrapper that shares
    Django's operations, features and quoting but never opens a connection of its own.
    """
    if not is_async():
        return connections[alias]
    return compile_wrapper(alias)


def compile_wrapper(alias: str) -> Any:
    """Return async mode's compile-only DatabaseWrapper for *alias* (see sql_connection)."""
    try:
        return _compile_wrappers[alias]
    except KeyError:
        pass
    with _wrapper_lock:
        if alias not in _compile_wrappers:
            settings_dict = _settings(alias)
            backend = load_backend(settings_dict["ENGINE"])
            if not issubclass(backend.DatabaseWrapper, PGDatabaseWrapper):
                raise ImproperlyConfigured(
                    f"vinyl's async mode needs a PostgreSQL database; DATABASES[{alias!r}] uses "
                    f"{settings_dict['ENGINE']!r}."
                )
            cls = _compile_wrapper_class(backend.DatabaseWrapper)
            _compile_wrappers[alias] = cls(settings_dict, alias)
        return _compile_wrappers[alias]


def _settings(alias: str) -> dict[str, Any]:
    try:
        return connections.settings[alias]
    except KeyError:
        raise ConnectionDoesNotExist(f"The connection '{alias}' doesn't exist.") from None


_is_postgresql: dict[str, bool] = {}


def is_postgresql(alias: str) -> bool:
    """Return whether *alias* uses a PostgreSQL backend (the aliases async mode serves)."""
    engine = _settings(alias).get("ENGINE") or ""
    known = _is_postgresql.get(engine)
    if known is None:
        try:
            wrapper_class = load_backend(engine).DatabaseWrapper
        except ImproperlyConfigured:  # the dummy backend of an empty alias, say
            known = False
        else:
            known = issubclass(wrapper_class, PGDatabaseWrapper)
        _is_postgresql[engine] = known
    return known
