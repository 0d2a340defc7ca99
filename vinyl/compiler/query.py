"""VinylQuery: Django's ``sql.Query`` whose compilers are vinyl's (see vinyl.compiler)."""

from __future__ import annotations

from typing import Any

from django.db.models import sql

from ..db.wrapper import sql_connection
from .compilers import compiler_for


class VinylQuery(sql.Query):
    """A Query that compiles with vinyl's compilers on the connection of the current mode."""

    #: A compiler that has already run this query (vinyl sets it while Django's iterables turn
    #: the rows into objects, so they reuse it instead of compiling again).
    vinyl_compiler: Any = None

    def get_compiler(self, using=None, connection=None, elide_empty=True):
        compiler = self.vinyl_compiler
        if compiler is not None:
            return compiler
        if using is None and connection is None:
            raise ValueError("Need either using or connection")
        if using:
            connection = sql_connection(using)
        return compiler_for(self.compiler)(self, connection, using, elide_empty)
