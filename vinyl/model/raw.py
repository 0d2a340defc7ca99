"""Raw SQL querysets whose evaluation follows the mode: ``await Model.vinyl.raw(sql)``.

Django's ``RawQuerySet`` runs the statement on a cursor that ``RawQuery`` keeps, reads the column
names from ``cursor.description`` and turns rows into instances in ``RawModelIterable``. vinyl
keeps all of that and replaces only the cursor: it runs the statement through
:mod:`vinyl.db.connection` (either mode), then hands ``RawQuery`` a finished cursor — the fetched
rows and their description. Replaying Django's code (vinyl.compiler.replay) would not fit here: the
statement is not compiled by a compiler that could answer from a tape.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from django.db import connections
from django.db.models.query import RawQuerySet
from django.db.models.sql.query import RawQuery

from ..compat import mirrors
from ..db.connection import DESCRIBED, run
from ..flags import is_async
from ..futures import maybe_async
from .errors import ImplicitQueryError
from .evaluation import Evaluation
from .prefetch import prefetch_related_objects

__all__ = ["VinylRawQuerySet"]


class FetchedCursor:
    """The part of a DB-API cursor that RawQuery reads, over rows vinyl already fetched."""

    __slots__ = ("description", "rows", "closed")

    def __init__(self, description: Any, rows: list[Any]) -> None:
        self.description = description
        self.rows = rows
        self.closed = False

    def __iter__(self) -> Iterator[Any]:
        return iter(self.rows)

    def close(self) -> None:
        self.closed = True


class VinylRawQuery(RawQuery):
    """A RawQuery that runs its statement through vinyl (see the module docstring)."""

    def clone(self, using: str) -> VinylRawQuery:
        return VinylRawQuery(self.sql, using, params=self.params)

    @mirrors("django.db.models.sql.query:RawQuery._execute_query")
    def adapted_params(self) -> Any:
        # Copied from RawQuery._execute_query(), where it is interleaved with the execution:
        # adapt parameters as much as possible, the target type being unknown (#17755).
        adapter = connections[self.using].ops.adapt_unknown_value
        if self.params_type is tuple:
            return tuple(adapter(value) for value in self.params)
        if self.params_type is dict:
            return {key: adapter(value) for key, value in self.params.items()}
        if self.params_type is None:
            return None
        raise RuntimeError(f"Unexpected params type: {self.params_type}")

    @maybe_async
    def vinyl_fetch(self):
        """Run the statement in the current mode; return a finished cursor."""
        description, rows = yield run(self.using, self.sql, self.adapted_params(), DESCRIBED)
        return FetchedCursor(description, rows)

    def _execute_query(self) -> None:
        # Django's entry point (get_columns(), __iter__). Sync mode can run the query now.
        if is_async():
            raise ImplicitQueryError(
                "This raw queryset has not been evaluated, and async mode cannot run a query "
                "implicitly (iteration, len(), indexing, .columns). Evaluate it first: "
                "`objs = await qs` or `async for obj in qs`."
            )
        self.cursor = self.vinyl_fetch()

    def __iter__(self) -> Iterator[Any]:
        # Django runs the statement again for each new iterator; rows vinyl has just fetched
        # (and nobody has read yet) are used instead.
        if self.cursor is None or self.cursor.closed:
            self._execute_query()
        return iter(self.cursor)


class VinylRawQuerySet(Evaluation, RawQuerySet):
    """A RawQuerySet whose evaluation follows the mode: ``await qs`` / ``async for`` in async mode.

    Mirrors ``QuerySet.raw()``'s result (same instances, annotations, translations, deferred
    fields, prefetch_related); in async mode, iterating or indexing it before it was awaited
    raises :class:`vinyl.ImplicitQueryError`.
    """

    def __init__(
        self,
        raw_query: str,
        model: Any = None,
        query: Any = None,
        params: Any = (),
        translations: Mapping[str, str] | None = None,
        using: str | None = None,
        hints: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(raw_query, model, query, params, translations, using, hints, **kwargs)
        if query is None:
            self.query = VinylRawQuery(sql=raw_query, using=self.db, params=params)

    def using(self, alias: str) -> VinylRawQuerySet:
        """Select the database this raw queryset runs on."""
        clone = self._clone()
        clone._db = alias
        clone.query = self.query.chain(using=alias)
        return clone

    @maybe_async
    def _fetch(self):
        """Evaluate the raw queryset (once) and return its result cache."""
        if self._result_cache is None:
            cursor = yield self.query.vinyl_fetch()
            # No await between handing over the rows and reading them: the query object is
            # shared by clones, as in Django.
            self.query.cursor = cursor
            self._result_cache = list(self.iterator())
        if self._prefetch_related_lookups and not self._prefetch_done:
            yield prefetch_related_objects(self._result_cache, *self._prefetch_related_lookups)
            self._prefetch_done = True
        return self._result_cache

    def _fetch_all(self) -> None:
        if self._result_cache is not None and (
            self._prefetch_done or not self._prefetch_related_lookups
        ):
            return
        if is_async():
            self.query._execute_query()  # raises ImplicitQueryError
        self._fetch()
