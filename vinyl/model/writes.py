"""Queryset writes in both modes.

:class:`QuerySetWrites` is a base of :class:`vinyl.model.VinylQuerySet`: ``create``,
``get_or_create``, ``update_or_create``, ``bulk_create``, ``bulk_update``, ``update`` and
``delete`` follow the mode, with Django's semantics (each docstring says what differs). Django
builds every statement; vinyl's compilers run it.

Each method mirrors Django's method of the same name as a ``@maybe_async`` generator (marked
``@mirrors``; see vinyl.compat): Django's checks and query building are called as they are, and
the statements run through vinyl.compiler.statements. ``update()`` is a copy too: Django's
``QuerySet.update`` runs its query at its end, and with multi-table inheritance its compiler
selects the parents' ids in the middle of compiling, which vinyl must do itself. Objects are saved
through the instance API (vinyl.model.instance), cascades are Django's ``Collector``
(vinyl.model.deletion).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from django.core import exceptions
from django.db import IntegrityError, NotSupportedError, connections
from django.db.models import AutoField, Field, Model, sql
from django.db.models.constants import OnConflict
from django.db.models.expressions import Case, Value, When
from django.db.models.functions import Cast
from django.db.models.query import QuerySet
from django.db.models.utils import resolve_callables

from ..compat import (
    BULK_CREATE_ORDER_WITH_RESPECT_TO,
    BULK_CREATE_SPLITS_OBJS,
    FETCH_MODES,
    mirrors,
)
from ..compiler import querycache
from ..compiler.replay import call_with_io
from ..compiler.statements import insert_objs, update_query
from ..db.transaction import in_atomic, mark_for_rollback_on_error
from ..flags import is_async
from ..futures import maybe_async
from .deletion import collect, delete_collected
from .evaluation import native_write_method

__all__ = ["QuerySetWrites"]


M = TypeVar("M", bound=Model)


class _Raised(BaseException):
    """An error of update()'s building, carried past ``mark_for_rollback_on_error`` (Django
    builds the query before that block: such an error leaves the transaction usable)."""

    def __init__(self, error: Exception) -> None:
        self.error = error


def _generic_foreign_key_given(model: type, kwargs: dict[str, Any]) -> bool:
    """Whether *kwargs* set a GenericForeignKey of *model* (a private field with a content type)."""
    return any(
        field.name in kwargs and hasattr(field, "get_content_type")
        for field in model._meta.private_fields
    )


class QuerySetWrites(Generic[M]):
    """The write methods of VinylQuerySet (a base class; see the module docstring)."""

    model: type[M]

    @mirrors("django.db.models.query:QuerySet.create")
    @maybe_async
    def create(self, **kwargs: Any) -> Generator[Any, Any, M]:
        """Create an object, save it (one INSERT … RETURNING) and return it, as ``create()``."""
        reverse_one_to_one_fields = frozenset(kwargs).intersection(
            self.model._meta._reverse_one_to_one_field_names
        )
        if reverse_one_to_one_fields:
            raise ValueError(
                "The following fields do not exist in this model: "
                + ", ".join(reverse_one_to_one_fields)
            )
        if is_async() and _generic_foreign_key_given(self.model, kwargs):
            # GenericForeignKey.__set__ looks the content type up, a synchronous query on a cold
            # ContentType cache: the constructor is sync code that may query.
            obj = yield call_with_io(lambda: self.model(**kwargs))
        else:
            obj = self.model(**kwargs)
        self._for_write = True
        yield _save_object(obj, force_insert=True, using=self.db)
        if FETCH_MODES:
            obj._state.fetch_mode = self._fetch_mode
        return obj

    create.alters_data = True

    @mirrors("django.db.models.query:QuerySet.get_or_create")
    @maybe_async
    def get_or_create(
        self, defaults: Any = None, **kwargs: Any
    ) -> Generator[Any, Any, tuple[M, bool]]:
        """Return ``(object, created)``, creating the object if needed, as ``get_or_create()``.

        Race-safe as Django's: the INSERT runs in a savepoint; on IntegrityError the object is
        looked up again.
        """
        self._for_write = True  # read from the write database
        try:
            return (yield self.get(**kwargs)), False
        except self.model.DoesNotExist:
            pass
        params = self._extract_model_params(defaults, **kwargs)
        try:
            obj = yield in_atomic(self.db, self._create_resolved, params, savepoint=True)
            return obj, True
        except IntegrityError as exc:
            error = exc
        try:
            return (yield self.get(**kwargs)), False
        except self.model.DoesNotExist:
            pass
        raise error

    get_or_create.alters_data = True

    def _create_resolved(self, params: dict[str, Any]) -> Any:
        return self.create(**dict(resolve_callables(params)))

    @mirrors("django.db.models.query:QuerySet.update_or_create")
    @maybe_async
    def update_or_create(
        self, defaults: Any = None, create_defaults: Any = None, **kwargs: Any
    ) -> Generator[Any, Any, tuple[M, bool]]:
        """Update the object matching *kwargs* with *defaults*, or create it; ``(obj, created)``.

        As Django's: in a transaction, the row locked with SELECT … FOR UPDATE.
        """
        self._for_write = True
        return (
            yield in_atomic(
                self.db,
                self._update_or_create,
                defaults,
                create_defaults,
                kwargs,
                savepoint=True,
            )
        )

    update_or_create.alters_data = True

    @maybe_async
    def _update_or_create(self, defaults: Any, create_defaults: Any, kwargs: dict[str, Any]):
        update_defaults = defaults or {}
        if create_defaults is None:
            create_defaults = update_defaults
        obj, created = yield self.select_for_update().get_or_create(create_defaults, **kwargs)
        if created:
            return obj, created
        for k, v in resolve_callables(update_defaults):
            setattr(obj, k, v)
        update_fields = set(update_defaults)
        concrete_field_names = self.model._meta._non_pk_concrete_field_names
        if concrete_field_names.issuperset(update_fields):
            # Fields set in pre_save() (auto_now …) are saved too, as Django does.
            pk_fields = self.model._meta.pk_fields
            for field in self.model._meta.local_concrete_fields:
                if not (field in pk_fields or field.__class__.pre_save is Field.pre_save):
                    update_fields.add(field.name)
                    if field.name != field.attname:
                        update_fields.add(field.attname)
            yield _save_object(obj, using=self.db, update_fields=update_fields)
        else:
            yield _save_object(obj, using=self.db)
        return obj, False

    @mirrors("django.db.models.query:QuerySet.update")
    @maybe_async
    def update(self, **kwargs: Any) -> Generator[Any, Any, int]:
        """Update every row of the queryset; return the number of rows matched, as ``update()``.

        Multi-table inheritance parents' updates run in one transaction (Django runs them
        without one).
        """
        # Django's QuerySet.update() builds the query (copied: it runs the query at its end, and
        # its compiler selects the parents' ids mid-compile, which vinyl must do itself). A
        # recorded queryset is checked from its shape (it has no combinator or distinct fields),
        # and a repeated one is updated from the query cache's template, its query never built.
        if self._vinyl_shape is None:
            self._not_support_combined_queries("update")
            if self.query.is_sliced:
                raise TypeError("Cannot update a query once a slice has been taken.")
            if self.query.distinct_fields:
                raise TypeError("Cannot call update() after .distinct(*fields).")
        elif self._vinyl_sliced():
            raise TypeError("Cannot update a query once a slice has been taken.")
        self._for_write = True

        @maybe_async
        def miss():
            try:
                query = self._update_query(kwargs)
            except Exception as exc:  # raised before the statement, as in Django: see below
                raise _Raised(exc) from None
            return (yield update_query(query, self.db))

        try:
            with mark_for_rollback_on_error(self.db):
                rows = yield querycache.update(self, kwargs, miss)
        except _Raised as raised:
            raise raised.error from None
        self._result_cache = None
        return rows

    def _update_query(self, kwargs: dict[str, Any]) -> Any:
        query = self.query.chain(sql.UpdateQuery)
        query.add_update_values(kwargs)
        new_order_by = []
        for col in query.order_by:  # inline annotations in order_by(), if possible
            alias = col
            descending = False
            if isinstance(alias, str) and alias.startswith("-"):
                alias = alias.removeprefix("-")
                descending = True
            if annotation := query.annotations.get(alias):
                if getattr(annotation, "contains_aggregate", False):
                    raise exceptions.FieldError(
                        f"Cannot update when ordering by an aggregate: {annotation}"
                    )
                if descending:
                    annotation = annotation.desc()
                new_order_by.append(annotation)
            else:
                new_order_by.append(col)
        query.order_by = tuple(new_order_by)
        query.clear_select_clause()
        return query

    update.alters_data = True

    @mirrors("django.db.models.query:QuerySet.delete")
    @maybe_async
    def delete(self) -> Generator[Any, Any, tuple[int, dict[str, int]]]:
        """Delete the rows and what cascades from them; ``(count, {label: count})``.

        Django's ``Collector`` decides the cascades (see vinyl.model.deletion).
        """
        self._not_support_combined_queries("delete")
        if self.query.is_sliced:
            raise TypeError("Cannot use 'limit' or 'offset' with delete().")
        if self.query.distinct_fields:
            raise TypeError("Cannot call delete() after .distinct(*fields).")
        if self._fields is not None:
            raise TypeError("Cannot call delete() after .values() or .values_list()")
        del_query = self._chain()
        del_query._for_write = True
        del_query.query.select_for_update = False
        del_query.query.select_related = False
        del_query.query.clear_ordering(force=True)
        collector = yield collect(del_query.db, self, del_query)
        result = yield delete_collected(collector)
        self._result_cache = None
        return result

    delete.alters_data = True
    delete.queryset_only = True

    # -- bulk operations ------------------------------------------------------------------------
    @mirrors("django.db.models.query:QuerySet.bulk_create")
    @maybe_async
    def bulk_create(
        self,
        objs: Any,
        batch_size: int | None = None,
        ignore_conflicts: bool = False,
        update_conflicts: bool = False,
        update_fields: Any = None,
        unique_fields: Any = None,
    ) -> Generator[Any, Any, list[M]]:
        """Insert the objects in batches (no signals); set their pks from RETURNING.

        As Django's ``bulk_create``, and also for multi-table-inherited models (Django refuses
        them): each table gets batched INSERTs, parents first, the children sharing their
        parents' pks, all in one transaction (conflict handling is not supported there).
        """
        if batch_size is not None and batch_size <= 0:
            raise ValueError("Batch size must be a positive integer.")
        opts = self.model._meta
        multi_table = any(
            parent._meta.concrete_model is not opts.concrete_model for parent in opts.all_parents
        )
        if multi_table and (ignore_conflicts or update_conflicts):
            raise NotSupportedError(
                "vinyl's bulk_create() of a multi-table-inherited model does not support "
                "ignore_conflicts or update_conflicts; create the objects without them, or "
                "use get_or_create()/update_or_create() per object."
            )
        if not objs:
            return objs
        if unique_fields:
            unique_fields = [
                opts.get_field(opts.pk.name if name == "pk" else name) for name in unique_fields
            ]
        if update_fields:
            update_fields = [opts.get_field(name) for name in update_fields]
        on_conflict = self._check_bulk_create_options(
            ignore_conflicts, update_conflicts, update_fields, unique_fields
        )
        self._for_write = True
        objs = list(objs)
        if multi_table:
            for obj in objs:
                obj._prepare_related_fields_for_save(operation_name="bulk_create")
            yield in_atomic(self.db, self._bulk_create_multi_table, objs, batch_size)
            return objs
        with_pk, without_pk = self._split_for_bulk_create(objs)
        if with_pk and without_pk:
            yield in_atomic(
                self.db, self._bulk_create, objs, with_pk, without_pk, batch_size,
                on_conflict, update_fields, unique_fields,
            )  # fmt: skip
        else:
            yield self._bulk_create(
                objs, with_pk, without_pk, batch_size, on_conflict, update_fields, unique_fields
            )
        return objs

    bulk_create.alters_data = True

    def _split_for_bulk_create(self, objs: list[Any]) -> tuple[list[Any], list[Any]]:
        split = self._prepare_for_bulk_create(objs)
        if BULK_CREATE_SPLITS_OBJS:
            return split
        with_pk, without_pk = [], []  # pks were set where a default gives one
        for obj in objs:
            (with_pk if obj._is_pk_set() else without_pk).append(obj)
        return with_pk, without_pk

    @maybe_async
    def _bulk_create(
        self, objs, with_pk, without_pk, batch_size, on_conflict, update_fields, unique_fields
    ):
        opts = self.model._meta
        if BULK_CREATE_ORDER_WITH_RESPECT_TO and opts.order_with_respect_to:
            yield call_with_io(lambda: QuerySet._handle_order_with_respect_to(self, objs))
        fields = [f for f in opts.concrete_fields if not f.generated]
        if with_pk:
            returned = yield self._batched_insert(
                with_pk, fields, batch_size, on_conflict, update_fields, unique_fields
            )
            for obj, results in zip(with_pk, returned, strict=False):
                for result, field in zip(results, opts.db_returning_fields, strict=False):
                    setattr(obj, field.attname, result)
            for obj in with_pk:
                obj._state.adding = False
                obj._state.db = self.db
        if without_pk:
            fields = [f for f in fields if not isinstance(f, AutoField)]
            returned = yield self._batched_insert(
                without_pk, fields, batch_size, on_conflict, update_fields, unique_fields
            )
            if on_conflict is None:
                assert len(returned) == len(without_pk)
            for obj, results in zip(without_pk, returned, strict=False):
                for result, field in zip(results, opts.db_returning_fields, strict=False):
                    setattr(obj, field.attname, result)
                obj._state.adding = False
                obj._state.db = self.db

    @mirrors("django.db.models.query:QuerySet._batched_insert")
    @maybe_async
    def _batched_insert(
        self, objs, fields, batch_size, on_conflict=None, update_fields=None,
        unique_fields=None, model=None, returning_fields=None,
    ):  # fmt: skip
        """Django's ``_batched_insert``: one INSERT per batch, in a transaction if several."""
        model = model or self.model
        ops = connections[self.db].ops
        max_batch_size = max(ops.bulk_batch_size(fields, objs), 1)
        batch_size = min(batch_size, max_batch_size) if batch_size else max_batch_size
        if returning_fields is None and (on_conflict is None or on_conflict == OnConflict.UPDATE):
            returning_fields = model._meta.db_returning_fields
        batches = [objs[i : i + batch_size] for i in range(0, len(objs), batch_size)]
        args = (model, batches, fields, on_conflict, update_fields, unique_fields, returning_fields)
        if len(batches) > 1:
            return (yield in_atomic(self.db, self._insert_batches, *args))
        return (yield self._insert_batches(*args))

    @maybe_async
    def _insert_batches(
        self, model, batches, fields, on_conflict, update_fields, unique_fields, returning_fields
    ):
        rows: list[Any] = []
        for batch in batches:
            rows.extend(
                (
                    yield insert_objs(
                        model,
                        batch,
                        fields,
                        returning_fields=returning_fields or None,
                        using=self.db,
                        on_conflict=on_conflict,
                        update_fields=update_fields,
                        unique_fields=unique_fields,
                    )
                )
            )
        return rows

    @maybe_async
    def _bulk_create_multi_table(self, objs: list[Any], batch_size: int | None):
        # Each table in the order Model._save_parents() saves them: parents first. A table's
        # rows whose pk is known get it (the child's pk, synced to its parents as save() does);
        # the others get theirs from RETURNING, and their children through the parent link.
        order: list[Any] = []

        def visit(cls: Any) -> None:
            for parent in cls._meta.parents:
                visit(parent)
            if cls not in order:
                order.append(cls)

        visit(self.model._meta.concrete_model)
        for cls in reversed(order):  # a pk given through a parent link reaches the parents
            for parent, link in cls._meta.parents.items():
                for obj in objs:
                    if (
                        link
                        and getattr(obj, parent._meta.pk.attname) is None
                        and getattr(obj, link.attname) is not None
                    ):
                        setattr(obj, parent._meta.pk.attname, getattr(obj, link.attname))
        for cls in order:
            meta = cls._meta
            for parent, link in meta.parents.items():
                if not link:
                    continue
                for obj in objs:  # the parent's row exists now: link to it
                    setattr(obj, link.attname, obj._get_pk_val(parent._meta))
                    if link.is_cached(obj):
                        link.delete_cached_value(obj)
            with_pk, without_pk = [], []
            for obj in objs:
                if not obj._is_pk_set(meta):
                    value = meta.pk.get_pk_value_on_save(obj)
                    if value is not None:
                        setattr(obj, meta.pk.attname, value)
                (with_pk if obj._is_pk_set(meta) else without_pk).append(obj)
            fields = [f for f in meta.local_concrete_fields if not f.generated]
            returning = meta.db_returning_fields
            for group, group_fields in (
                (with_pk, fields),
                (without_pk, [f for f in fields if not isinstance(f, AutoField)]),
            ):
                if not group:
                    continue
                returned = yield self._batched_insert(
                    group, group_fields, batch_size, model=cls, returning_fields=returning
                )
                for obj, results in zip(group, returned, strict=False):
                    for result, field in zip(results, returning, strict=False):
                        setattr(obj, field.attname, result)
        for obj in objs:
            obj._state.adding = False
            obj._state.db = self.db

    @mirrors("django.db.models.query:QuerySet.bulk_update")
    @maybe_async
    def bulk_update(
        self, objs: Any, fields: Any, batch_size: int | None = None
    ) -> Generator[Any, Any, int]:
        """Update *fields* of each object (a CASE per field and batch); the rows matched.

        As Django's ``bulk_update``: the batches run in one transaction.
        """
        if batch_size is not None and batch_size <= 0:
            raise ValueError("Batch size must be a positive integer.")
        if not fields:
            raise ValueError("Field names must be given to bulk_update().")
        objs = tuple(objs)
        if not all(obj._is_pk_set() for obj in objs):
            raise ValueError("All bulk_update() objects must have a primary key set.")
        opts = self.model._meta
        fields = [opts.get_field(name) for name in fields]
        if any(not f.concrete or f.many_to_many for f in fields):
            raise ValueError("bulk_update() can only be used with concrete fields.")
        all_pk_fields = set(opts.pk_fields)
        for parent in opts.all_parents:
            all_pk_fields.update(parent._meta.pk_fields)
        if any(f in all_pk_fields for f in fields):
            raise ValueError("bulk_update() cannot be used with primary key fields.")
        if not objs:
            return 0
        for obj in objs:
            obj._prepare_related_fields_for_save(operation_name="bulk_update", fields=fields)
        self._for_write = True
        connection = connections[self.db]
        max_batch_size = connection.ops.bulk_batch_size([opts.pk, opts.pk, *fields], objs)
        batch_size = min(batch_size, max_batch_size) if batch_size else max_batch_size
        requires_casting = connection.features.requires_casted_case_in_updates
        updates = []
        for start in range(0, len(objs), batch_size):
            batch_objs = objs[start : start + batch_size]
            update_kwargs = {}
            for field in fields:
                when_statements = []
                for obj in batch_objs:
                    attr = getattr(obj, field.attname)
                    if not hasattr(attr, "resolve_expression"):
                        attr = Value(attr, output_field=field)
                    when_statements.append(When(pk=obj.pk, then=attr))
                case_statement = Case(*when_statements, output_field=field)
                if requires_casting:
                    case_statement = Cast(case_statement, output_field=field)
                update_kwargs[field.attname] = case_statement
            updates.append(([obj.pk for obj in batch_objs], update_kwargs))
        return (yield in_atomic(self.db, self._bulk_update_batches, updates))

    bulk_update.alters_data = True

    @maybe_async
    def _bulk_update_batches(self, updates: list[Any]):
        rows = 0
        queryset = self.using(self.db)
        for pks, update_kwargs in updates:
            rows += yield queryset.filter(pk__in=pks).update(**update_kwargs)
        return rows

    # Django's a-methods, natively async.
    if TYPE_CHECKING:  # the a-methods below, as type checkers see them

        async def acreate(self, **kwargs: Any) -> M: ...
        async def aget_or_create(self, defaults: Any = None, **kwargs: Any) -> tuple[M, bool]: ...
        async def aupdate_or_create(
            self, defaults: Any = None, create_defaults: Any = None, **kwargs: Any
        ) -> tuple[M, bool]: ...
        async def abulk_create(self, objs: Any, *args: Any, **kwargs: Any) -> list[M]: ...
        async def abulk_update(
            self, objs: Any, fields: Any, batch_size: int | None = None
        ) -> int: ...
        async def aupdate(self, **kwargs: Any) -> int: ...
        async def adelete(self) -> tuple[int, dict[str, int]]: ...

    else:
        acreate = native_write_method("create")
        aget_or_create = native_write_method("get_or_create")
        aupdate_or_create = native_write_method("update_or_create")
        abulk_create = native_write_method("bulk_create")
        abulk_update = native_write_method("bulk_update")
        aupdate = native_write_method("update")
        adelete = native_write_method("delete")
        adelete.queryset_only = True


def _save_object(obj: Any, **kwargs: Any) -> Any:
    # Imported here, when an object is first saved: Django's QuerySet.create() calls obj.save(),
    # and Model.save() runs its UPDATE through a queryset (vinyl.model.instance builds
    # VinylQuerySets), a mutual recursion Django resolves by method dispatch. A model that only
    # carries a VinylManager has no vinyl save() method to dispatch to.
    from .instance import save_object

    return save_object(obj, **kwargs)
