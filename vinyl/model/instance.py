"""The instance API of VinylModel in both modes: save, insert, update, delete, refresh_from_db.

:class:`InstanceWrites` is a base of :class:`vinyl.model.base.VinylModel`. The module-level functions
work on any model instance (``VinylQuerySet.create`` uses them for models that only carry a
VinylManager).

``save()`` mirrors Django's ``Model.save`` → ``save_base`` → ``_save_parents`` → ``_save_table``
→ ``_do_update``/``_do_insert`` (Django 6.1; the Django 5.2 differences are marked). These are
copied as ``@maybe_async`` generators rather than replayed: their queries sit between signals and
changes to the instance, which a replay would repeat. Everything around the queries is Django's:
``_prepare_related_fields_for_save``, ``_validate_force_insert``, fields' ``pre_save``, the
``InsertQuery``/``UpdateQuery`` and their SQL.
"""

from __future__ import annotations

import dis
import functools
import inspect
import sys
from typing import Any

from django.db import router
from django.db.models import ExpressionWrapper, IntegerField, Max, Model, Value
from django.db.models.constants import LOOKUP_SEP
from django.db.models.expressions import DatabaseDefault
from django.db.models.functions import Coalesce
from django.db.models.query import QuerySet
from django.db.models.signals import post_save, pre_save

from ..compat import RETURNING_ON_SAVE, mirrors, not_updated_error
from ..compiler.replay import call_sync_code
from ..compiler.statements import insert_objs, update_returning
from ..compiler.tape import SynchronousQueryError, _tape
from ..db.transaction import in_atomic, mark_for_rollback_on_error
from ..db.wrapper import sql_connection
from ..flags import async_mode, is_async
from ..futures import maybe_async
from .deletion import collect, delete_collected
from .queryset import as_vinyl
from .signals import send

__all__ = [
    "InstanceWrites",
    "delete",
    "insert",
    "refresh_from_db",
    "save",
    "save_object",
    "update",
]

# _save_table's answer when an update() found no row (instead of raising NotUpdated, which would
# mark an enclosing transaction for rollback).
_MISSING: Any = object()


_save_hooks_cache: dict[tuple[type, type, Any], tuple[str, ...]] = {}


def custom_save_hooks(cls: type) -> tuple[str, ...]:
    """Name the steps of Django's save chain that *cls* customises.

    Django's ``save_base()`` inserts through ``Model._do_insert`` → ``base_manager._insert()``
    and updates through ``Model._do_update`` → ``QuerySet._update()``: a model or a custom
    manager/queryset may override those, and vinyl's own save chain would skip the override.
    """
    manager = cls._meta.concrete_model._base_manager  # a proxy saves through its concrete's
    # The manager's queryset class may change after the first save (Django's tests do).
    key = (cls, type(manager), getattr(manager, "_queryset_class", None))
    found = _save_hooks_cache.get(key)
    if found is not None:
        return found
    hooks = [
        f"{cls.__name__}.{name}()"
        for name in ("_do_insert", "_do_update", "_save_table", "_save_parents", "save_base")
        if getattr(cls, name) is not getattr(Model, name)
    ]
    queryset_class = type(manager.get_queryset())
    for name in ("_insert", "_update"):
        standard = getattr(QuerySet, name)
        method = getattr(type(manager), name, standard)
        if getattr(method, "__wrapped__", method) is not standard:
            hooks.append(f"{type(manager).__name__}.{name}()")
        elif getattr(queryset_class, name, standard) is not standard:
            hooks.append(f"{queryset_class.__name__}.{name}()")
    _save_hooks_cache[key] = found = tuple(hooks)
    return found


@maybe_async
def save(
    obj: Model,
    *,
    force_insert: Any = False,
    force_update: bool = False,
    using: str | None = None,
    update_fields: Any = None,
):
    """Save *obj* with Django's ``Model.save()`` semantics, maybe-async; return None.

    A model whose save chain is customised (``custom_save_hooks``) is saved by Django's own
    ``Model.save()`` (in async mode through :func:`vinyl.compiler.replay.call_sync_code`).
    """
    if custom_save_hooks(type(obj)):
        # Django's own save chain, which calls them (in async mode, in vinyl's worker thread).
        yield call_sync_code(
            lambda: Model.save(
                obj,
                force_insert=force_insert,
                force_update=force_update,
                using=using,
                update_fields=update_fields,
            )
        )
        return None
    yield _save(obj, force_insert, force_update, using, update_fields, False)


@mirrors("django.db.models.base:Model.save")
@maybe_async
def _save(obj, force_insert, force_update, using, update_fields, missing_ok):
    # Model.save()
    obj._prepare_related_fields_for_save(operation_name="save")
    using = using or router.db_for_write(obj.__class__, instance=obj)
    if force_insert and (force_update or update_fields):
        raise ValueError("Cannot force both insert and updating in model saving.")
    deferred_non_generated_fields = {
        f.attname
        for f in obj._meta.concrete_fields
        if f.attname not in obj.__dict__ and f.generated is False
    }
    if update_fields is not None:
        if not update_fields:  # skips the signals too
            return None
        update_fields = frozenset(update_fields)
        field_names = obj._meta._non_pk_concrete_field_names
        not_updatable_fields = update_fields.difference(field_names)
        if not_updatable_fields:
            raise ValueError(
                "The following fields do not exist in this model, are m2m fields, primary "
                f"keys, or are non-concrete fields: {', '.join(not_updatable_fields)}"
            )
    elif (
        not force_insert
        and deferred_non_generated_fields
        and using == obj._state.db
        and obj._is_pk_set()
    ):
        # A deferred instance saved to its own database saves its loaded fields only.
        pk_fields = obj._meta.pk_fields
        field_names = {
            field.attname
            for field in obj._meta.concrete_fields
            if field not in pk_fields and not hasattr(field, "through")
        }
        loaded_fields = field_names.difference(deferred_non_generated_fields)
        if loaded_fields:
            update_fields = frozenset(loaded_fields)
    return (
        yield save_base(
            obj,
            using=using,
            force_insert=force_insert,
            force_update=force_update,
            update_fields=update_fields,
            missing_ok=missing_ok,
        )
    )


@mirrors("django.db.models.base:Model.save_base")
@maybe_async
def save_base(
    obj: Model,
    raw: bool = False,
    force_insert: Any = False,
    force_update: bool = False,
    using: str | None = None,
    update_fields: Any = None,
    missing_ok: bool = False,
):
    """Django's ``Model.save_base()``: signals around the tables' saves, maybe-async.

    Returns True; with *missing_ok*, False (and no post_save) when an update matched no row.
    """
    using = using or router.db_for_write(obj.__class__, instance=obj)
    assert not (force_insert and (force_update or update_fields))
    assert update_fields is None or update_fields
    cls = origin = obj.__class__
    if cls._meta.proxy:
        cls = cls._meta.concrete_model
    meta = cls._meta
    if not meta.auto_created:
        yield send(
            pre_save,
            sender=origin,
            instance=obj,
            raw=raw,
            using=using,
            update_fields=update_fields,
        )
    args = (obj, cls, raw, force_insert, force_update, using, update_fields, missing_ok)
    if meta.parents:  # several tables: one transaction, as Django
        updated = yield in_atomic(using, _save_tables, *args)
    else:
        with mark_for_rollback_on_error(using):
            updated = yield _save_tables(*args)
    if updated is _MISSING:
        return False
    obj._state.db = using
    obj._state.adding = False
    if not meta.auto_created:
        yield send(
            post_save,
            sender=origin,
            instance=obj,
            created=(not updated),
            update_fields=update_fields,
            raw=raw,
            using=using,
        )
    return True


@maybe_async
def _save_tables(obj, cls, raw, force_insert, force_update, using, update_fields, missing_ok):
    parent_inserted = False
    if not raw:
        force_insert = obj._validate_force_insert(force_insert)
        parent_inserted = yield _save_parents(
            obj, cls, using, update_fields, force_insert, None, missing_ok
        )
        if parent_inserted is _MISSING:
            return _MISSING
    return (
        yield _save_table(
            obj,
            raw,
            cls,
            force_insert or parent_inserted,
            force_update,
            using,
            update_fields,
            missing_ok,
        )
    )


@mirrors("django.db.models.base:Model._save_parents")
@maybe_async
def _save_parents(obj, cls, using, update_fields, force_insert, updated_parents, missing_ok):
    # Model._save_parents()
    meta = cls._meta
    inserted = False
    if updated_parents is None:
        updated_parents = {}
    for parent, field in meta.parents.items():
        if (
            field
            and getattr(obj, parent._meta.pk.attname) is None
            and getattr(obj, field.attname) is not None
        ):
            setattr(obj, parent._meta.pk.attname, getattr(obj, field.attname))
        if (parent_updated := updated_parents.get(parent)) is None:
            parent_inserted = yield _save_parents(
                obj, parent, using, update_fields, force_insert, updated_parents, missing_ok
            )
            if parent_inserted is _MISSING:
                return _MISSING
            updated = yield _save_table(
                obj,
                False,
                parent,
                parent_inserted or issubclass(parent, force_insert),
                False,
                using,
                update_fields,
                missing_ok,
            )
            if updated is _MISSING:
                return _MISSING
            if not updated:
                inserted = True
            updated_parents[parent] = updated
        elif not parent_updated:
            inserted = True
        if field:
            setattr(obj, field.attname, obj._get_pk_val(parent._meta))
            if field.is_cached(obj):
                field.delete_cached_value(obj)
    return inserted


@mirrors("django.db.models.base:Model._save_table")
@maybe_async
def _save_table(obj, raw, cls, force_insert, force_update, using, update_fields, missing_ok):
    # Model._save_table(): an UPDATE if possible, else an INSERT, for one table.
    meta = cls._meta
    pk_fields = meta.pk_fields
    non_pks_non_generated = [
        f for f in meta.local_concrete_fields if f not in pk_fields and not f.generated
    ]
    if update_fields:
        non_pks_non_generated = [
            f
            for f in non_pks_non_generated
            if f.name in update_fields or f.attname in update_fields
        ]
    if not obj._is_pk_set(meta) and not isinstance(getattr(obj, meta.pk.attname), DatabaseDefault):
        setattr(obj, meta.pk.attname, meta.pk.get_pk_value_on_save(obj))
    pk_set = obj._is_pk_set(meta)
    if not pk_set and (force_update or update_fields):
        raise ValueError("Cannot force an update in save() with no primary key.")
    updated = False
    # Skip an UPDATE when adding an instance and primary key has a default.
    if (
        not raw
        and not force_insert
        and not force_update
        and obj._state.adding
        and all(f.has_default() or f.has_db_default() for f in meta.pk_fields)
    ):
        force_insert = True
    if pk_set and not force_insert:
        base_qs = cls._base_manager.using(using)
        values = [
            (f, None, (getattr(obj, f.attname) if raw else f.pre_save(obj, False)))
            for f in non_pks_non_generated
        ]
        forced_update = update_fields or force_update
        returning_fields = []
        if RETURNING_ON_SAVE:
            returning_fields = [
                f
                for f in meta.local_concrete_fields
                if f.generated and f.referenced_fields.intersection(non_pks_non_generated)
            ]
            for field, _model, value in values:
                if (update_fields is None or field.name in update_fields) and hasattr(
                    value, "resolve_expression"
                ):
                    returning_fields.append(field)
        if type(base_qs) is QuerySet:  # recorded, so a repeated save's UPDATE is a template's
            filtered = as_vinyl(base_qs).filter(pk=obj._get_pk_val(meta))
        else:  # a base manager's own queryset class filters in its own way
            filtered = as_vinyl(base_qs.filter(pk=obj._get_pk_val(meta)))
        results = yield _do_update(
            obj, filtered, values, update_fields, forced_update, returning_fields
        )
        if updated := bool(results):
            _assign_returned_values(obj, results[0], returning_fields)
        elif missing_ok and (force_update or update_fields):
            return _MISSING
        elif force_update:
            raise not_updated_error(type(obj))("Forced update did not affect any rows.")
        elif update_fields:
            raise not_updated_error(type(obj))("Save with update_fields did not affect any rows.")
    if not updated:
        if meta.order_with_respect_to:
            field = meta.order_with_respect_to
            filter_args = field.get_filter_kwargs_for_object(obj)
            aggregate = yield as_vinyl(
                cls._base_manager.using(using).filter(**filter_args)
            ).aggregate(
                _order__max=Coalesce(
                    ExpressionWrapper(Max("_order") + Value(1), output_field=IntegerField()),
                    Value(0),
                ),
            )
            obj._order = aggregate["_order__max"]
        insert_fields = [
            f
            for f in meta.local_concrete_fields
            if not f.generated and (pk_set or f is not meta.auto_field)
        ]
        returning_fields = list(meta.db_returning_fields)
        if RETURNING_ON_SAVE:
            can_return = sql_connection(using).features.can_return_columns_from_insert
            for field in insert_fields:
                value = getattr(obj, field.attname) if raw else field.pre_save(obj, add=True)
                if hasattr(value, "resolve_expression"):
                    if field not in returning_fields:
                        returning_fields.append(field)
                elif (
                    field.db_returning
                    and not can_return
                    and not (pk_set and field is meta.auto_field)
                ):
                    returning_fields.remove(field)
        results = yield insert_objs(
            cls, [obj], insert_fields, returning_fields, raw=raw, using=using
        )
        if results:
            _assign_returned_values(obj, results[0], returning_fields)
    return updated


@mirrors("django.db.models.base:Model._do_update")
@maybe_async
def _do_update(obj, filtered, values, update_fields, forced_update, returning_fields):
    # Model._do_update(): a list of returned rows ([()] for a matched row without any).
    if not values:
        # Only the pk in this table (or no update_fields of it): check the row exists.
        if update_fields is not None or (yield filtered.exists()):
            return [()]
        return []
    if obj._meta.select_on_save and not forced_update:
        if not (yield filtered.exists()):
            return []
        if results := (yield update_returning(filtered, values, returning_fields)):
            return results
        return [()] if (yield filtered.exists()) else []
    return (yield update_returning(filtered, values, returning_fields))


@mirrors("django.db.models.base:Model._assign_returned_values")
def _assign_returned_values(obj: Any, returned_values: Any, returning_fields: Any) -> None:
    fields = iter(returning_fields)
    for value, field in zip(returned_values, fields, strict=False):
        setattr(obj, field.attname, value)
    # Fields whose value the database computed but did not return are stale: defer them.
    for field in fields:
        obj.__dict__.pop(field.attname, None)


@maybe_async
def insert(obj: Model, using: str | None = None):
    """INSERT *obj* (its parents first), as ``save(force_insert=True)``; return *obj*."""
    yield _save(obj, True, False, using, None, False)
    return obj


@maybe_async
def update(obj: Model, **fields: Any):
    """Set *fields* on *obj* and UPDATE only those columns (and auto_now ones).

    Returns whether a row matched. Signals are sent as for ``save(update_fields=...)``
    (post_save only when a row matched).
    """
    if not obj._is_pk_set():
        raise ValueError(
            f"{obj._meta.object_name}.update() needs a saved object (its primary key is not "
            "set); use insert() or save() first."
        )
    if not fields:
        raise ValueError(f"{obj._meta.object_name}.update() needs at least one field=value.")
    meta = obj._meta
    names = set()
    for name, value in fields.items():
        field = meta.get_field(name)
        setattr(obj, name, value)
        names.add(field.name)
    for field in meta.concrete_fields:
        if getattr(field, "auto_now", False):
            names.add(field.name)
    using = obj._state.db or router.db_for_write(obj.__class__, instance=obj)
    return (yield _save(obj, False, False, using, names, True))


@mirrors("django.db.models.base:Model.delete")
@maybe_async
def delete(obj: Model, using: str | None = None, keep_parents: bool = False):
    """Delete *obj* and what cascades from it, as ``Model.delete()``; ``(count, {label: n})``."""
    if not obj._is_pk_set():
        raise ValueError(
            f"{obj._meta.object_name} object can't be deleted because its "
            f"{obj._meta.pk.attname} attribute is set to None."
        )
    using = using or router.db_for_write(obj.__class__, instance=obj)
    collector = yield collect(using, obj, [obj], keep_parents=keep_parents)
    return (yield delete_collected(collector))


@mirrors("django.db.models.base:Model.refresh_from_db")
@maybe_async
def refresh_from_db(
    obj: Model, using: str | None = None, fields: Any = None, from_queryset: Any = None
):
    """Reload field values from the database, as ``Model.refresh_from_db()``; return None."""
    # Copied from Django 6.1's Model.refresh_from_db: the query sits mid-function.
    if fields is None:
        obj._prefetched_objects_cache = {}
    else:
        prefetched_objects_cache = getattr(obj, "_prefetched_objects_cache", ())
        fields = set(fields)
        for field in fields.copy():
            if field in prefetched_objects_cache:
                del prefetched_objects_cache[field]
                fields.remove(field)
        if not fields:
            return None
        if any(LOOKUP_SEP in f for f in fields):
            raise ValueError(
                f'Found "{LOOKUP_SEP}" in fields argument. Relations and transforms '
                "are not allowed in fields."
            )
    if from_queryset is None:
        from_queryset = obj.__class__._base_manager.db_manager(using, hints={"instance": obj})
    elif using is not None:
        from_queryset = from_queryset.using(using)
    db_instance_qs = from_queryset.filter(pk=obj.pk)
    deferred_fields = obj.get_deferred_fields()
    if fields is not None:
        db_instance_qs = db_instance_qs.only(*fields)
    elif deferred_fields:
        db_instance_qs = db_instance_qs.only(
            *{f.attname for f in obj._meta.concrete_fields if f.attname not in deferred_fields}
        )
    db_instance = yield as_vinyl(db_instance_qs).get()
    non_loaded_fields = db_instance.get_deferred_fields()
    for field in obj._meta.fields:
        if field.attname in non_loaded_fields:
            continue
        if field.concrete:
            setattr(obj, field.attname, getattr(db_instance, field.attname))
        if field.is_relation:
            if field.is_cached(db_instance):
                field.set_cached_value(obj, field.get_cached_value(db_instance))
            elif field.is_cached(obj):
                field.delete_cached_value(obj)
    for rel in obj._meta.related_objects:
        if (fields is None or rel.name in fields) and rel.is_cached(obj):
            rel.delete_cached_value(obj)
    for field in obj._meta.private_fields:
        if (fields is None or field.name in fields) and field.is_relation and field.is_cached(obj):
            field.delete_cached_value(obj)
    obj._state.db = db_instance._state.db
    return None


def _refuse_django_caller(obj: Any, method: str) -> None:
    """Refuse Django's sync code (QuerySet.create, forms, admin …) calling *method* in async mode.

    There it would get an awaitable it drops: the write would silently not happen. Django itself
    refuses synchronous queries in an event loop (SynchronousOnlyOperation); so does vinyl.
    """
    if not is_async() or _tape.get() is not None:
        return
    caller = sys._getframe(2).f_globals.get("__name__", "")
    if caller == "django" or caller.startswith("django."):
        raise SynchronousQueryError(
            f"Django's synchronous code ({caller}) called {type(obj).__name__}.{method}() in "
            "async mode, where it returns an awaitable that Django would drop. Use vinyl's API "
            f"and await it (`await obj.{method}()`, `await {type(obj).__name__}.vinyl.create("
            "...)`, `await obj.q.<relation>.add(...)`), or run this code in sync mode "
            "(vinyl.sync_mode(), or a thread without a running event loop)."
        )


def save_object(obj: Any, **kwargs: Any) -> Any:
    """Save *obj* in the current mode (maybe-async), as Django's writes call ``obj.save()``.

    A class that overrides save() gets it called, as in Django. An override of a VinylModel that
    returns ``super().save(...)`` (an awaitable in async mode) runs at once in both modes. Any
    other override is synchronous code (Django's way: ``super().save(...)`` without ``return``,
    auth's ``AbstractBaseUser``, a plain model's): async mode runs it once in vinyl's worker
    thread in sync mode, its ``super().save()`` and other queries run by the calling task in
    its transaction (:func:`vinyl.compiler.replay.call_sync_code`).
    """
    save_method = type(obj).save
    if isinstance(obj, InstanceWrites):
        if save_method is InstanceWrites.save:
            return save(obj, **kwargs)
        if not is_async() or not _may_return_none(save_method):
            result = obj.save(**kwargs)
            if is_async() and not inspect.isawaitable(result):
                raise TypeError(
                    f"{type(obj).__name__}.save() returned {result!r} in async mode: an override "
                    "of save() on a VinylModel must return super().save(...) (an awaitable in "
                    "async mode), or the save never runs."
                )
            return result
    elif save_method is Model.save:
        return save(obj, **kwargs)
    return call_sync_code(lambda: obj.save(**kwargs))


_returns_none_cache: dict[Any, bool] = {}


def _may_return_none(func: Any) -> bool:
    """Whether the save() override *func* may return None: then it is synchronous code that
    does not hand back ``super().save()``'s awaitable (``return`` without a value, or none)."""
    code = getattr(func, "__code__", None)
    if code is None:
        return True  # not a Python function: it may be anything
    found = _returns_none_cache.get(code)
    if found is None:
        found = False
        previous = None
        for instruction in dis.get_instructions(code):
            name = instruction.opname
            if (name == "RETURN_CONST" and instruction.argval is None) or (
                name == "RETURN_VALUE"
                and previous is not None
                and previous.opname == "LOAD_CONST"
                and previous.argval is None
            ):
                found = True
                break
            previous = instruction
        _returns_none_cache[code] = found
    return found


def _sync_save(override: Any) -> Any:
    """Wrap a subclass's synchronous save() override: in async mode, calling it returns an
    awaitable that runs it in vinyl's worker thread (see save_object)."""

    @functools.wraps(override)
    def save(self: Any, *args: Any, **kwargs: Any) -> Any:
        if is_async():
            return call_sync_code(lambda: override(self, *args, **kwargs))
        return override(self, *args, **kwargs)

    return save


class InstanceWrites:
    """The write methods of VinylModel instances (a base class; see the module docstring).

    In sync mode they return values as Django's do; in async mode awaitables. A subclass's
    ``save()`` override that returns ``super().save(...)`` runs as it is; one written as Django's
    (``super().save(...)`` without ``return``) is wrapped so that, in async mode, calling it
    returns an awaitable that runs it in vinyl's worker thread (see :func:`save_object`).
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        override = cls.__dict__.get("save")
        if inspect.isfunction(override) and _may_return_none(override):
            cls.save = _sync_save(override)  # type: ignore[method-assign]

    def save(
        self,
        *,
        force_insert: Any = False,
        force_update: bool = False,
        using: str | None = None,
        update_fields: Any = None,
    ) -> Any:
        """Save the instance, as Django's ``Model.save()`` (maybe-async; None)."""
        _refuse_django_caller(self, "save")
        return save(
            self,
            force_insert=force_insert,
            force_update=force_update,
            using=using,
            update_fields=update_fields,
        )

    save.alters_data = True  # type: ignore[attr-defined]

    def insert(self, using: str | None = None) -> Any:
        """INSERT the instance (parents first; db defaults returned); maybe-async, the instance."""
        return insert(self, using)

    insert.alters_data = True  # type: ignore[attr-defined]

    def update(self, **fields: Any) -> Any:
        """Set *fields* and UPDATE only those columns (and auto_now ones); maybe-async bool.

        True if a row matched. Sends pre_save/post_save as ``save(update_fields=...)`` does.
        """
        return update(self, **fields)

    update.alters_data = True  # type: ignore[attr-defined]

    def delete(self, using: str | None = None, keep_parents: bool = False) -> Any:
        """Delete the instance with Django's cascades; maybe-async ``(count, {label: n})``."""
        _refuse_django_caller(self, "delete")
        return delete(self, using, keep_parents)

    delete.alters_data = True  # type: ignore[attr-defined]

    def refresh_from_db(
        self, using: str | None = None, fields: Any = None, from_queryset: Any = None
    ) -> Any:
        """Reload the fields from the database, as Django's; maybe-async None."""
        if is_async() and _tape.get() is not None:
            # Called by Django code that vinyl replays (deferred field loading): its query
            # is answered from the replay's tape, synchronously.
            return super().refresh_from_db(using, fields, from_queryset)  # type: ignore[misc]
        return refresh_from_db(self, using, fields, from_queryset)

    async def asave(
        self,
        *,
        force_insert: Any = False,
        force_update: bool = False,
        using: str | None = None,
        update_fields: Any = None,
    ) -> None:
        """``await obj.save(...)`` in async mode (Django's asave without a worker thread)."""
        with async_mode():
            await save_object(
                self,
                force_insert=force_insert,
                force_update=force_update,
                using=using,
                update_fields=update_fields,
            )

    asave.alters_data = True  # type: ignore[attr-defined]

    async def adelete(self, using: str | None = None, keep_parents: bool = False) -> Any:
        """``await obj.delete(...)`` in async mode (without a worker thread)."""
        with async_mode():
            return await self.delete(using, keep_parents)

    adelete.alters_data = True  # type: ignore[attr-defined]

    async def arefresh_from_db(
        self, using: str | None = None, fields: Any = None, from_queryset: Any = None
    ) -> None:
        """``await obj.refresh_from_db(...)`` in async mode (without a worker thread)."""
        with async_mode():
            await self.refresh_from_db(using, fields, from_queryset)
