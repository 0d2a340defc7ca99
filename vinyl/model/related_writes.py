"""Writes of ``obj.q.<reverse foreign key or many-to-many>``: Django's related-manager writes,
maybe-async (see :class:`RelatedWrites`).
"""

from __future__ import annotations

from typing import Any

from django.db import NotSupportedError, router
from django.db.models.query import QuerySet
from django.db.models.signals import m2m_changed
from django.db.models.utils import resolve_callables

from ..compat import M2M_CHANGED_SENDS_RAW, mirrors
from ..compiler.replay import call_with_io
from ..db.transaction import in_atomic
from ..futures import maybe_async
from .evaluation import native_write_method
from .instance import save_object
from .queryset import as_vinyl
from .signals import send

__all__ = ["RelatedWrites"]


def _m2m_raw(rel: Any) -> dict[str, Any]:
    return {"raw": False} if M2M_CHANGED_SENDS_RAW else {}


def _plain_queryset(rel: Any, db: str | None = None) -> Any:
    """The related model's queryset without the relation filter, as ``super().get_queryset()``
    inside Django's related manager, as a VinylQuerySet."""
    manager = rel.db_manager(db) if db else rel
    return as_vinyl(super(type(rel), manager).get_queryset())


@maybe_async
def _evaluated(objs: Any):
    # set() evaluates its argument first (refs #19816); a queryset is evaluated in the mode.
    if isinstance(objs, QuerySet) and objs._result_cache is None:
        return tuple((yield as_vinyl(objs)))
    return tuple(objs)


class RelatedWrites:
    """Writes of ``obj.q.<reverse FK or many-to-many>``: Django's related-manager writes,
    maybe-async (a base of vinyl.model.relations.RelatedManager, whose ``related`` attribute is
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
    @mirrors(
        "django.db.models.fields.related_descriptors:create_reverse_many_to_one_manager.RelatedManager.create",
        "django.db.models.fields.related_descriptors:create_forward_many_to_many_manager.ManyRelatedManager.create",
    )
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

    @mirrors(
        "django.db.models.fields.related_descriptors:create_reverse_many_to_one_manager.RelatedManager.get_or_create",
        "django.db.models.fields.related_descriptors:create_reverse_many_to_one_manager.RelatedManager.update_or_create",
        "django.db.models.fields.related_descriptors:create_forward_many_to_many_manager.ManyRelatedManager.get_or_create",
        "django.db.models.fields.related_descriptors:create_forward_many_to_many_manager.ManyRelatedManager.update_or_create",
    )
    @maybe_async
    def _get_or_update(self, method: str, through_defaults: Any, kwargs: dict[str, Any]):
        # Django calls the manager's get_or_create/update_or_create on the *related* queryset
        # (super(RelatedManager, rel).get_or_create() dispatches to rel.get_queryset()): the
        # lookup is among the related objects only.
        rel = self.related
        if self._kind() == "fk":
            _no_through_defaults(through_defaults)
            rel._check_fk_val()
            kwargs[rel.field.name] = rel.instance
            db = router_for_write(rel.model, rel.instance)
            related = as_vinyl(rel.db_manager(db).get_queryset())
            return (yield getattr(related, method)(**kwargs))
        db = router_for_write(rel.instance.__class__, rel.instance)
        related = as_vinyl(rel.db_manager(db).get_queryset())
        obj, created = yield getattr(related, method)(**kwargs)
        if created:  # an object found was related already
            yield self.add(obj, through_defaults=through_defaults)
        return obj, created

    # -- add ----------------------------------------------------------------------------------
    @mirrors(
        "django.db.models.fields.related_descriptors:create_reverse_many_to_one_manager.RelatedManager.add",
        "django.db.models.fields.related_descriptors:create_forward_many_to_many_manager.ManyRelatedManager.add",
    )
    @maybe_async
    def add(self, *objs: Any, bulk: bool = True, through_defaults: Any = None):
        """Relate *objs* (reverse FK: one UPDATE with ``bulk``, else save() each)."""
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
                yield save_object(obj)

        yield in_atomic(db, save_each)
        return None

    add.alters_data = True

    @mirrors(
        "django.db.models.fields.related_descriptors:create_forward_many_to_many_manager.ManyRelatedManager._add_base",
    )
    @maybe_async
    def _add_base(self, objs: Any, through_defaults: Any, db: str):
        rel = self.related
        yield self._add_items(rel.source_field_name, rel.target_field_name, objs,
                              through_defaults, db)  # fmt: skip
        if rel.symmetrical:  # the mirror entry of a symmetrical m2m to self
            yield self._add_items(rel.target_field_name, rel.source_field_name, objs,
                                  through_defaults, db)  # fmt: skip

    @mirrors(
        "django.db.models.fields.related_descriptors:create_forward_many_to_many_manager.ManyRelatedManager._add_items",
    )
    @maybe_async
    def _add_items(self, source_field_name, target_field_name, objs, through_defaults, db):
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
            lambda: rel._get_missing_target_ids(
                source_field_name, target_field_name, db, target_ids
            )
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
    @mirrors(
        "django.db.models.fields.related_descriptors:create_reverse_many_to_one_manager.RelatedManager.remove",
        "django.db.models.fields.related_descriptors:create_forward_many_to_many_manager.ManyRelatedManager.remove",
    )
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

    @mirrors(
        "django.db.models.fields.related_descriptors:create_reverse_many_to_one_manager.RelatedManager._clear",
    )
    @maybe_async
    def _clear_fk(self, queryset: Any, bulk: bool):
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
                yield save_object(obj, update_fields=[rel.field.name])

        yield in_atomic(db, save_each)
        return None

    @mirrors(
        "django.db.models.fields.related_descriptors:create_forward_many_to_many_manager.ManyRelatedManager.clear",
    )
    @maybe_async
    def _clear_m2m(self, db: str):
        rel = self.related
        signal = dict(sender=rel.through, instance=rel.instance, reverse=rel.reverse,
                      model=rel.model, pk_set=None, using=db, **_m2m_raw(rel))  # fmt: skip
        yield send(m2m_changed, action="pre_clear", **signal)
        rel._remove_prefetched_objects()
        filters = rel._build_remove_filters(super(type(rel), rel).get_queryset().using(db))
        yield as_vinyl(rel.through._default_manager.using(db).filter(filters)).delete()
        yield send(m2m_changed, action="post_clear", **signal)

    @mirrors(
        "django.db.models.fields.related_descriptors:create_forward_many_to_many_manager.ManyRelatedManager._remove_items",
    )
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
    @mirrors(
        "django.db.models.fields.related_descriptors:create_reverse_many_to_one_manager.RelatedManager.set",
        "django.db.models.fields.related_descriptors:create_forward_many_to_many_manager.ManyRelatedManager.set",
    )
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
    acreate = native_write_method("create")
    aget_or_create = native_write_method("get_or_create")
    aupdate_or_create = native_write_method("update_or_create")
    aadd = native_write_method("add")
    aremove = native_write_method("remove")
    aclear = native_write_method("clear")
    aset = native_write_method("set")


def router_for_write(model: Any, instance: Any) -> str:
    return router.db_for_write(model, instance=instance)


def _no_through_defaults(through_defaults: Any) -> None:
    if through_defaults is not None:
        raise TypeError("through_defaults is only accepted by many-to-many relations.")
