"""Queryset writes in both modes, and the write helpers the instance API shares.

:class:`QuerySetWrites` is a base of :class:`vinyl.model.VinylQuerySet`: ``create``,
``get_or_create``, ``update_or_create``, ``bulk_create``, ``bulk_update``, ``update`` and
``delete`` follow the mode, with Django's semantics (each docstring says what differs). Django
builds every statement; vinyl's compilers run it.

Where Django's function does its I/O at the end of pure logic it is reused as it is: ``update()``
runs Django's ``QuerySet.update`` through :func:`vinyl.replay.call_with_io` (each pass builds a
fresh query; every statement runs once and its answer is taped). Where signals, savepoints or
instance bookkeeping sit between the queries (``bulk_create``, ``bulk_update``, ``get_or_create``
…), the function is mirrored as a ``@maybe_async`` generator.
"""

from __future__ import annotations

import inspect
from typing import Any

from django.core import exceptions
from django.core.exceptions import EmptyResultSet
from django.db import IntegrityError, NotSupportedError, connections
from django.db.models import AutoField, Field, Model, sql
from django.db.models.constants import OnConflict
from django.db.models.expressions import Case, Value, When
from django.db.models.functions import Cast
from django.db.models.query import QuerySet
from django.db.models.sql.constants import ROW_COUNT
from django.db.models.utils import resolve_callables

from .compiler import compiler_for
from .connection import ALL_ROWS, prepare, run
from .evaluation import native_a_method
from .flags import is_async
from .futures import maybe_async
from .pool import sql_connection
from .replay import call_with_io
from .transaction import Atomic, mark_for_rollback_on_error

__all__ = ["QuerySetWrites", "in_atomic", "insert_objs", "update_returning", "update_query"]


# -- helpers shared with vinyl.instance and vinyl.deletion -----------------------------------------


def in_atomic(using: str, op: Any, *args: Any, savepoint: bool = False, **kwargs: Any) -> Any:
    """Return ``op(*args, **kwargs)`` run inside ``atomic(using, savepoint)`` (maybe-async).

    Sync mode: Django's ``transaction.atomic`` (through vinyl.atomic), as Django's own multi-
    statement writes. Async mode: vinyl's async block on the task's pinned connection.
    """
    block = Atomic(using, savepoint, False)
    if not is_async():
        with block:
            return op(*args, **kwargs)
    return _in_atomic_async(block, op, args, kwargs)


async def _in_atomic_async(block: Atomic, op: Any, args: Any, kwargs: Any) -> Any:
    async with block:
        result = op(*args, **kwargs)  # called inside: its queries run on the pinned connection
        while inspect.isawaitable(result):
            result = await result
        return result


def insert_objs(
    model: Any,
    objs: list[Any],
    fields: list[Any],
    returning_fields: Any = None,
    raw: bool = False,
    using: str = "default",
    on_conflict: Any = None,
    update_fields: Any = None,
    unique_fields: Any = None,
) -> Any:
    """Django's ``QuerySet._insert()`` on vinyl's compiler; the RETURNING rows (maybe-async)."""
    query = sql.InsertQuery(
        model, on_conflict=on_conflict, update_fields=update_fields, unique_fields=unique_fields
    )
    query.insert_values(fields, objs, raw=raw)
    compiler = compiler_for(query.compiler)(query, sql_connection(using), using)
    return compiler.vinyl_execute_sql(returning_fields)


def update_query(query: Any, using: str) -> Any:
    """Run an ``sql.UpdateQuery``; return the row count, as ``SQLUpdateCompiler.execute_sql``.

    With multi-table inheritance parents (related updates) the ids are selected first and each
    table updated, in one transaction (see _update_with_parents).
    """
    if query.related_updates:
        return in_atomic(using, _update_with_parents, query, using)
    compiler = compiler_for(query.compiler)(query, sql_connection(using), using)
    return _row_count(compiler.vinyl_execute_sql(ROW_COUNT))


@maybe_async
def _update_with_parents(query: Any, using: str):
    # SQLUpdateCompiler.execute_sql() with related updates. Its as_sql() selects the ids to
    # update (pre_sql_setup), a query in the middle of compiling: compile every statement
    # through call_with_io (that SELECT runs there), then run them. Row counting as Django's.
    def compile_all() -> list[Any]:
        q = query.clone()
        statements = [_compiled(q.get_compiler(using))]  # sets q.related_ids
        statements.extend(_compiled(r.get_compiler(using)) for r in q.get_related_updates())
        return statements

    statements = yield call_with_io(compile_all)
    row_count = None
    is_empty = True
    for i, statement in enumerate(statements):
        if statement is None:
            continue
        count = yield run(using, statement[0], statement[1], ROW_COUNT)
        if i == 0 or (is_empty and count):  # the first statement that ran counts
            row_count, is_empty = count, False
    return row_count or 0


def _compiled(compiler: Any) -> tuple[str, Any] | None:
    try:
        sql_, params = compiler.as_sql()
    except EmptyResultSet:
        return None
    return (sql_, params) if sql_ else None


@maybe_async
def _row_count(value: Any):
    return (yield value) or 0


@maybe_async
def update_returning(queryset: QuerySet, values: list[Any], returning_fields: Any = None):
    """Django's ``QuerySet._update(values, returning_fields)``, maybe-async.

    Without *returning_fields* the row count; with a list (Django 6.1's save path) one tuple of
    returned values per updated row, converted as Django's ``execute_returning_sql`` does.
    """
    if queryset.query.is_sliced:
        raise TypeError("Cannot update a query once a slice has been taken.")
    using = queryset.db
    query = queryset.query.chain(sql.UpdateQuery)
    query.add_update_fields(values)
    query.annotations = {}  # so that they won't be present in subqueries
    queryset._result_cache = None
    if returning_fields is None:
        return (yield update_query(query, using))
    if query.related_updates:
        raise NotImplementedError(
            "Update returning is not implemented for queries with related updates."
        )
    if not returning_fields:
        return [()] * (yield update_query(query, using))
    yield prepare(using)
    compiler = compiler_for(query.compiler)(query, sql_connection(using), using)
    compiler.returning_fields = returning_fields
    statement, params = compiler.as_sql()
    rows = yield run(using, statement, params, ALL_ROWS)
    db_table = query.get_meta().db_table
    converters = compiler.get_converters([f.get_col(db_table) for f in returning_fields])
    if converters:
        rows = compiler.apply_converters(rows, converters)
    return [tuple(row) for row in rows]


def _native(name: str) -> Any:
    return native_a_method(name, alters_data=True)


# -- the queryset methods ----------------------------------------------------------------------------


class QuerySetWrites:
    """The write methods of VinylQuerySet (a base class; see the module docstring)."""

    @maybe_async
    def create(self, **kwargs: Any):
        """Create an object, save it (one INSERT … RETURNING) and return it, as ``create()``."""
        reverse_one_to_one_fields = frozenset(kwargs).intersection(
            self.model._meta._reverse_one_to_one_field_names
        )
        if reverse_one_to_one_fields:
            raise ValueError(
                "The following fields do not exist in this model: "
                + ", ".join(reverse_one_to_one_fields)
            )
        obj = self.model(**kwargs)
        self._for_write = True
        yield _save(obj, force_insert=True, using=self.db)
        if hasattr(self, "_fetch_mode"):  # Django >= 6.1
            obj._state.fetch_mode = self._fetch_mode
        return obj

    create.alters_data = True

    @maybe_async
    def get_or_create(self, defaults: Any = None, **kwargs: Any):
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

    @maybe_async
    def update_or_create(
        self, defaults: Any = None, create_defaults: Any = None, **kwargs: Any
    ):
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
            yield _save(obj, using=self.db, update_fields=update_fields)
        else:
            yield _save(obj, using=self.db)
        return obj, False

    @maybe_async
    def update(self, **kwargs: Any):
        """Update every row of the queryset; return the number of rows matched, as ``update()``.

        Multi-table inheritance parents' updates run in one transaction (Django runs them
        without one).
        """
        # Django's QuerySet.update() builds the query (copied: it runs the query at its end, and
        # its compiler selects the parents' ids mid-compile, which vinyl must do itself).
        self._not_support_combined_queries("update")
        if self.query.is_sliced:
            raise TypeError("Cannot update a query once a slice has been taken.")
        if self.query.distinct_fields:
            raise TypeError("Cannot call update() after .distinct(*fields).")
        self._for_write = True
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
        with mark_for_rollback_on_error(self.db):
            rows = yield update_query(query, self.db)
        self._result_cache = None
        return rows

    update.alters_data = True

    @maybe_async
    def delete(self):
        """Delete the rows and what cascades from them; ``(count, {label: count})``.

        Django's ``Collector`` decides the cascades (see vinyl.deletion).
        """
        from .deletion import collect, delete_collected

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
    @maybe_async
    def bulk_create(
        self,
        objs: Any,
        batch_size: int | None = None,
        ignore_conflicts: bool = False,
        update_conflicts: bool = False,
        update_fields: Any = None,
        unique_fields: Any = None,
    ):
        """Insert the objects in batches (no signals); set their pks from RETURNING.

        As Django's ``bulk_create``, and also for multi-table-inherited models (Django refuses
        them): each table gets batched INSERTs, parents first, the children sharing their
        parents' pks, all in one transaction (conflict handling is not supported there).
        """
        if batch_size is not None and batch_size <= 0:
            raise ValueError("Batch size must be a positive integer.")
        opts = self.model._meta
        multi_table = any(
            parent._meta.concrete_model is not opts.concrete_model
            for parent in opts.all_parents
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
        if split is not None:  # Django >= 6.0
            return split
        with_pk, without_pk = [], []  # Django 5.2: pks were set where a default gives one
        for obj in objs:
            (with_pk if obj._is_pk_set() else without_pk).append(obj)
        return with_pk, without_pk

    @maybe_async
    def _bulk_create(
        self, objs, with_pk, without_pk, batch_size, on_conflict, update_fields, unique_fields
    ):
        opts = self.model._meta
        if hasattr(QuerySet, "_handle_order_with_respect_to") and opts.order_with_respect_to:
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
        if returning_fields is None and (
            on_conflict is None or on_conflict == OnConflict.UPDATE
        ):
            returning_fields = model._meta.db_returning_fields
        batches = [objs[i : i + batch_size] for i in range(0, len(objs), batch_size)]
        if len(batches) > 1:
            return (
                yield in_atomic(
                    self.db, self._insert_batches, model, batches, fields, on_conflict,
                    update_fields, unique_fields, returning_fields,
                )  # fmt: skip
            )
        return (
            yield self._insert_batches(
                model, batches, fields, on_conflict, update_fields, unique_fields,
                returning_fields,
            )  # fmt: skip
        )

    @maybe_async
    def _insert_batches(
        self, model, batches, fields, on_conflict, update_fields, unique_fields, returning_fields
    ):
        rows: list[Any] = []
        for batch in batches:
            rows.extend(
                (
                    yield insert_objs(
                        model, batch, fields, returning_fields=returning_fields or None,
                        using=self.db, on_conflict=on_conflict, update_fields=update_fields,
                        unique_fields=unique_fields,
                    )  # fmt: skip
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

    @maybe_async
    def bulk_update(self, objs: Any, fields: Any, batch_size: int | None = None):
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
    acreate = _native("create")
    aget_or_create = _native("get_or_create")
    aupdate_or_create = _native("update_or_create")
    abulk_create = _native("bulk_create")
    abulk_update = _native("bulk_update")
    aupdate = _native("update")
    adelete = _native("delete")
    adelete.queryset_only = True  # type: ignore[attr-defined]


def _save(obj: Any, **kwargs: Any) -> Any:
    """Save *obj* in the current mode (maybe-async), as Django's writes call ``obj.save()``.

    A VinylModel whose class overrides save() gets its own save() called, as in Django (in async
    mode the override must return ``super().save(...)``). Other models (a VinylManager put on a
    plain Django model) are saved by vinyl's implementation of ``Model.save()``, unless their
    class overrides ``save()``: sync mode then calls it, as Django does; async mode cannot call
    synchronous code and raises an error naming the fix (never a silent skip).
    """
    from .instance import InstanceWrites, refuse_sync_override, save

    if isinstance(obj, InstanceWrites) and type(obj).save is not InstanceWrites.save:
        result = obj.save(**kwargs)
        if is_async() and not inspect.isawaitable(result):
            raise TypeError(
                f"{type(obj).__name__}.save() returned {result!r} in async mode: an override of "
                "save() on a VinylModel must return super().save(...) (an awaitable in async "
                "mode), or the save never runs."
            )
        return result
    if not isinstance(obj, InstanceWrites) and type(obj).save is not Model.save:
        if is_async():
            refuse_sync_override(type(obj), f"{type(obj).__name__}.save()")
        obj.save(**kwargs)
        return None
    return save(obj, **kwargs)






# -- related-manager writes (obj.q.<to-many relation>) --------------------------------------------


def _m2m_raw(rel: Any) -> dict[str, Any]:
    # Django >= 6.1 sends m2m_changed with raw=…; 5.2 does not.
    return {"raw": False} if hasattr(rel, "_add_base") else {}


def _plain_queryset(rel: Any, db: str | None = None) -> Any:
    """The related model's queryset without the relation filter, as ``super().get_queryset()``
    inside Django's related manager, as a VinylQuerySet."""
    from .model import as_vinyl

    manager = rel.db_manager(db) if db else rel
    return as_vinyl(super(type(rel), manager).get_queryset())


@maybe_async
def _evaluated(objs: Any):
    # set() evaluates its argument first (refs #19816); a queryset is evaluated in the mode.
    if isinstance(objs, QuerySet) and objs._result_cache is None:
        from .model import as_vinyl

        return tuple((yield as_vinyl(objs)))
    return tuple(objs)


class RelatedWrites:
    """Writes of ``obj.q.<reverse FK or many-to-many>``: Django's related-manager writes,
    maybe-async (a base of vinyl.relations.RelatedManager, whose ``related`` attribute is
    Django's related manager).

    Reverse foreign keys: ``create``, ``get_or_create``, ``update_or_create``, ``add``
    (``bulk``), ``remove`` and ``clear`` (nullable keys only), ``set``. Many-to-manys: the same
    with ``through_defaults``, and ``m2m_changed`` signals. Each mirrors Django's method of the
    same name (Django 6.1's ``related_descriptors``): Django's checks and helpers
    (``_check_fk_val``, ``_get_target_ids``, ``_get_add_plan``, ``_build_remove_filters`` …) are
    called as they are; the queries run through vinyl.
    """

    __slots__ = ()
    related: Any

    def _kind(self) -> str:
        rel = self.related
        if hasattr(rel, "source_field_name"):
            return "m2m"
        if hasattr(rel, "content_type"):
            raise NotSupportedError(
                "obj.q does not write through generic relations yet: create the related object "
                "with its own manager (e.g. Note.vinyl.create(content_object=obj, ...)), or use "
                "Django's related manager in sync mode."
            )
        return "fk"

    def _nullable_fk(self, name: str) -> Any:
        rel = self.related
        if not rel.field.null:
            raise AttributeError(
                f"{name}() is only available on a reverse foreign key that can be null "
                f"({rel.field.model.__name__}.{rel.field.name} has null=False), as in Django."
            )
        return rel

    # -- create & co --------------------------------------------------------------------------
    @maybe_async
    def create(self, *, through_defaults: Any = None, **kwargs: Any):
        """Create a related object and relate it (``through_defaults``: many-to-many only)."""
        rel = self.related
        if self._kind() == "fk":
            _no_through_defaults(through_defaults)
            rel._check_fk_val()
            rel._remove_prefetched_objects()
            kwargs[rel.field.name] = rel.instance
            db = router_for_write(rel.model, rel.instance)
            return (yield _plain_queryset(rel, db).create(**kwargs))
        db = router_for_write(rel.instance.__class__, rel.instance)
        new_obj = yield _plain_queryset(rel, db).create(**kwargs)
        yield self.add(new_obj, through_defaults=through_defaults)
        return new_obj

    create.alters_data = True

    @maybe_async
    def get_or_create(self, *, through_defaults: Any = None, **kwargs: Any):
        """``(object, created)`` among the related objects, relating a created one."""
        return (yield self._get_or_update("get_or_create", through_defaults, kwargs))

    get_or_create.alters_data = True

    @maybe_async
    def update_or_create(self, *, through_defaults: Any = None, **kwargs: Any):
        """``(object, created)``: update the related object matching, or create and relate."""
        return (yield self._get_or_update("update_or_create", through_defaults, kwargs))

    update_or_create.alters_data = True

    @maybe_async
    def _get_or_update(self, method: str, through_defaults: Any, kwargs: dict[str, Any]):
        rel = self.related
        if self._kind() == "fk":
            _no_through_defaults(through_defaults)
            rel._check_fk_val()
            kwargs[rel.field.name] = rel.instance
            db = router_for_write(rel.model, rel.instance)
            return (yield getattr(_plain_queryset(rel, db), method)(**kwargs))
        db = router_for_write(rel.instance.__class__, rel.instance)
        obj, created = yield getattr(_plain_queryset(rel, db), method)(**kwargs)
        if created:  # an object found was related already
            yield self.add(obj, through_defaults=through_defaults)
        return obj, created

    # -- add ----------------------------------------------------------------------------------
    @maybe_async
    def add(self, *objs: Any, bulk: bool = True, through_defaults: Any = None):
        """Relate *objs* (reverse FK: one UPDATE with ``bulk``, else save() each)."""
        from .model import as_vinyl

        rel = self.related
        if self._kind() == "m2m":
            rel._remove_prefetched_objects()
            db = router_for_write(rel.through, rel.instance)
            yield in_atomic(db, self._add_base, objs, through_defaults, db)
            return None
        _no_through_defaults(through_defaults)
        rel._check_fk_val()
        rel._remove_prefetched_objects()
        db = router_for_write(rel.model, rel.instance)

        def check_and_update_obj(obj: Any) -> None:
            if not isinstance(obj, rel.model):
                raise TypeError(f"'{rel.model._meta.object_name}' instance expected, got {obj!r}")
            setattr(obj, rel.field.name, rel.instance)

        if bulk:
            pks = []
            for obj in objs:
                check_and_update_obj(obj)
                if obj._state.adding or obj._state.db != db:
                    raise ValueError(
                        f"{obj!r} instance isn't saved. Use bulk=False or save the object first."
                    )
                pks.append(obj.pk)
            yield as_vinyl(rel.model._base_manager.using(db).filter(pk__in=pks)).update(
                **{rel.field.name: rel.instance}
            )
            return None

        @maybe_async
        def save_each():
            for obj in objs:
                check_and_update_obj(obj)
                yield _save(obj)

        yield in_atomic(db, save_each)
        return None

    add.alters_data = True

    @maybe_async
    def _add_base(self, objs: Any, through_defaults: Any, db: str):
        rel = self.related
        yield self._add_items(rel.source_field_name, rel.target_field_name, objs,
                              through_defaults, db)  # fmt: skip
        if rel.symmetrical:  # the mirror entry of a symmetrical m2m to self
            yield self._add_items(rel.target_field_name, rel.source_field_name, objs,
                                  through_defaults, db)  # fmt: skip

    @maybe_async
    def _add_items(self, source_field_name, target_field_name, objs, through_defaults, db):
        from django.db.models.signals import m2m_changed

        from .model import as_vinyl
        from .signals import send

        rel = self.related
        if not objs:
            return None
        through_defaults = dict(resolve_callables(through_defaults or {}))
        target_ids = rel._get_target_ids(target_field_name, objs)
        can_ignore_conflicts, must_send_signals, can_fast_add = rel._get_add_plan(
            db, source_field_name
        )
        through = as_vinyl(rel.through._default_manager.using(db))
        if can_fast_add:
            yield through.bulk_create(
                [
                    rel.through(**{
                        f"{source_field_name}_id": rel.related_val[0],
                        f"{target_field_name}_id": target_id,
                    })
                    for target_id in target_ids
                ],
                ignore_conflicts=True,
            )  # fmt: skip
            return None
        missing = yield call_with_io(
            lambda: rel._get_missing_target_ids(source_field_name, target_field_name, db,
                                                target_ids)  # fmt: skip
        )
        signal = dict(sender=rel.through, instance=rel.instance, reverse=rel.reverse,
                      model=rel.model, pk_set=missing, using=db, **_m2m_raw(rel))  # fmt: skip
        if must_send_signals:
            yield send(m2m_changed, action="pre_add", **signal)
        yield through.bulk_create(
            [
                rel.through(**through_defaults, **{
                    f"{source_field_name}_id": rel.related_val[0],
                    f"{target_field_name}_id": target_id,
                })
                for target_id in missing
            ],
            ignore_conflicts=can_ignore_conflicts,
        )  # fmt: skip
        if must_send_signals:
            yield send(m2m_changed, action="post_add", **signal)
        return None

    # -- remove / clear -----------------------------------------------------------------------
    @maybe_async
    def remove(self, *objs: Any, bulk: bool = True):
        """Unrelate *objs* (reverse FK: set the key to NULL; many-to-many: delete the rows)."""
        rel = self.related
        if self._kind() == "m2m":
            rel._remove_prefetched_objects()
            db = router_for_write(rel.through, rel.instance)
            yield self._remove_items(rel.source_field_name, rel.target_field_name, objs, db)
            return None
        rel = self._nullable_fk("remove")
        if not objs:
            return None
        rel._check_fk_val()
        val = rel.field.get_foreign_related_value(rel.instance)
        old_ids = set()
        for obj in objs:
            if not isinstance(obj, rel.model):
                raise TypeError(f"'{rel.model._meta.object_name}' instance expected, got {obj!r}")
            if rel.field.get_local_related_value(obj) == val:
                old_ids.add(obj.pk)
            else:
                raise rel.field.remote_field.model.DoesNotExist(
                    f"{obj!r} is not related to {rel.instance!r}."
                )
        yield self._clear_fk(rel.filter(pk__in=old_ids), bulk)
        return None

    remove.alters_data = True

    @maybe_async
    def clear(self, *, bulk: bool = True):
        """Unrelate every related object (reverse FK: nullable keys only)."""
        rel = self.related
        if self._kind() == "m2m":
            rel._remove_prefetched_objects()
            db = router_for_write(rel.through, rel.instance)
            yield in_atomic(db, self._clear_m2m, db)
            return None
        rel = self._nullable_fk("clear")
        rel._check_fk_val()
        yield self._clear_fk(rel.get_queryset(), bulk)
        return None

    clear.alters_data = True

    @maybe_async
    def _clear_fk(self, queryset: Any, bulk: bool):
        from .model import as_vinyl

        rel = self.related
        rel._remove_prefetched_objects()
        db = router_for_write(rel.model, rel.instance)
        queryset = as_vinyl(queryset.using(db))
        if bulk:
            yield queryset.update(**{rel.field.name: None})
            return None

        @maybe_async
        def save_each():
            for obj in (yield queryset):
                setattr(obj, rel.field.name, None)
                yield _save(obj, update_fields=[rel.field.name])

        yield in_atomic(db, save_each)
        return None

    @maybe_async
    def _clear_m2m(self, db: str):
        from django.db.models.signals import m2m_changed

        from .model import as_vinyl
        from .signals import send

        rel = self.related
        signal = dict(sender=rel.through, instance=rel.instance, reverse=rel.reverse,
                      model=rel.model, pk_set=None, using=db, **_m2m_raw(rel))  # fmt: skip
        yield send(m2m_changed, action="pre_clear", **signal)
        rel._remove_prefetched_objects()
        filters = rel._build_remove_filters(super(type(rel), rel).get_queryset().using(db))
        yield as_vinyl(rel.through._default_manager.using(db).filter(filters)).delete()
        yield send(m2m_changed, action="post_clear", **signal)

    @maybe_async
    def _remove_items(self, source_field_name, target_field_name, objs, db):
        rel = self.related
        if not objs:
            return None
        old_ids = set()
        for obj in objs:
            if isinstance(obj, rel.model):
                old_ids.add(rel.target_field.get_foreign_related_value(obj)[0])
            else:
                old_ids.add(obj)
        yield in_atomic(db, self._remove_ids, old_ids, db)
        return None

    @maybe_async
    def _remove_ids(self, old_ids: set[Any], db: str):
        from django.db.models.signals import m2m_changed

        from .model import as_vinyl
        from .signals import send

        rel = self.related
        signal = dict(sender=rel.through, instance=rel.instance, reverse=rel.reverse,
                      model=rel.model, pk_set=old_ids, using=db, **_m2m_raw(rel))  # fmt: skip
        yield send(m2m_changed, action="pre_remove", **signal)
        target_model_qs = super(type(rel), rel).get_queryset()
        if target_model_qs._has_filters():
            old_vals = target_model_qs.using(db).filter(
                **{f"{rel.target_field.target_field.attname}__in": old_ids}
            )
        else:
            old_vals = old_ids
        filters = rel._build_remove_filters(old_vals)
        yield as_vinyl(rel.through._default_manager.using(db).filter(filters)).delete()
        yield send(m2m_changed, action="post_remove", **signal)

    # -- set ----------------------------------------------------------------------------------
    @maybe_async
    def set(self, objs: Any, *, bulk: bool = True, clear: bool = False,
            through_defaults: Any = None):  # fmt: skip
        """Make *objs* the related objects: remove the others, add the missing ones."""
        rel = self.related
        kind = self._kind()
        if kind == "fk":
            _no_through_defaults(through_defaults)
            rel._check_fk_val()
        objs = yield _evaluated(objs)
        if kind == "m2m":
            db = router_for_write(rel.through, rel.instance)
            yield in_atomic(db, self._set_m2m, objs, clear, through_defaults, db)
        elif rel.field.null:
            db = router_for_write(rel.model, rel.instance)
            yield in_atomic(db, self._set_fk, objs, bulk, clear, db)
        else:
            yield self.add(*objs, bulk=bulk)
        return None

    set.alters_data = True

    @maybe_async
    def _set_fk(self, objs: tuple[Any, ...], bulk: bool, clear: bool, db: str):
        from .model import as_vinyl

        rel = self.related
        if clear:
            yield self.clear(bulk=bulk)
            yield self.add(*objs, bulk=bulk)
            return None
        old_objs = set((yield as_vinyl(rel.using(db).all())))
        new_objs = []
        for obj in objs:
            if obj in old_objs:
                old_objs.remove(obj)
            else:
                new_objs.append(obj)
        yield self.remove(*old_objs, bulk=bulk)
        yield self.add(*new_objs, bulk=bulk)
        return None

    @maybe_async
    def _set_m2m(self, objs: tuple[Any, ...], clear: bool, through_defaults: Any, db: str):
        from .model import as_vinyl

        rel = self.related
        rel._remove_prefetched_objects()
        if clear:
            yield self._clear_m2m(db)
            yield self._add_base(objs, through_defaults, db)
            return None
        attname = rel.target_field.target_field.attname
        old_ids = set((yield as_vinyl(rel.using(db).values_list(attname, flat=True))))
        new_objs = []
        for obj in objs:
            fk_val = (
                rel.target_field.get_foreign_related_value(obj)[0]
                if isinstance(obj, rel.model)
                else rel.target_field.get_prep_value(obj)
            )
            if fk_val in old_ids:
                old_ids.remove(fk_val)
            else:
                new_objs.append(obj)
        yield self._remove_items(rel.source_field_name, rel.target_field_name, tuple(old_ids), db)
        yield self._add_base(tuple(new_objs), through_defaults, db)
        return None

    # Django's a-methods, natively async.
    acreate = _native("create")
    aget_or_create = _native("get_or_create")
    aupdate_or_create = _native("update_or_create")
    aadd = _native("add")
    aremove = _native("remove")
    aclear = _native("clear")
    aset = _native("set")


def router_for_write(model: Any, instance: Any) -> str:
    from django.db import router

    return router.db_for_write(model, instance=instance)


def _no_through_defaults(through_defaults: Any) -> None:
    if through_defaults is not None:
        raise TypeError("through_defaults is only accepted by many-to-many relations.")
