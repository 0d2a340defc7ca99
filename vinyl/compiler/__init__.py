"""Dual SQL compilers: Django generates the SQL, vinyl runs it in the current mode.

* ``compilers``: subclasses of the PostgreSQL backend's compilers with ``vinyl_execute_sql()``,
  the one place a compiled query is executed (this package is the ``compiler_module`` of the
  compile-only connection, so it exports the compiler classes by Django's names);
* ``tape`` and ``replay``: ``call_with_io()`` runs a Django function whose query sits in the
  middle of its logic, in async mode by replaying it against a tape of answers;
* ``query``: ``VinylQuery``, Django's ``sql.Query`` compiled by these compilers;
* ``statements``: the one-statement writes (INSERT, UPDATE, UPDATE … RETURNING).
"""

from .compilers import (
    SQLAggregateCompiler,
    SQLCompiler,
    SQLDeleteCompiler,
    SQLInsertCompiler,
    SQLUpdateCompiler,
    compiler_for,
)
from .query import VinylQuery
from .replay import call_with_io
from .tape import SynchronousQueryError

__all__ = [
    "SQLAggregateCompiler",
    "SQLCompiler",
    "SQLDeleteCompiler",
    "SQLInsertCompiler",
    "SQLUpdateCompiler",
    "SynchronousQueryError",
    "VinylQuery",
    "call_with_io",
    "compiler_for",
]
