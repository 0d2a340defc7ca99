"""``prefetch_related_objects``: Django's, run in the current mode.

Sync mode calls Django's function. Async mode runs it once in a worker thread, its queries run
on the event loop (vinyl.compiler.replay).
VinylQuerySet uses it for ``prefetch_related`` (per chunk when streaming), and so do raw
querysets and ``obj.q``.

The to-many accessors of VinylModels (their descriptors are replaced in vinyl.model.guards)
give managers whose ``get_prefetch_querysets()`` builds the prefetching queryset with recorded
steps, so that the structural query cache serves the queries of a repeated prefetch (below).
"""

from __future__ import annotations

from typing import Any

from django.db import connections
from django.db.models.fields.related_descriptors import (
    ManyToManyDescriptor,
    ReverseManyToOneDescriptor,
)
from django.db.models.query import prefetch_related_objects as _django_prefetch
from django.utils.functional import cached_property

from ..compat import mirrors
from ..compiler import querycache
from ..compiler.replay import call_with_io
from ..futures import ready

__all__ = [
    "VinylManyToManyDescriptor",
    "VinylReverseManyToOneDescriptor",
    "prefetch_related_objects",
]


def prefetch_related_objects(instances: Any, *lookups: Any) -> Any:
    """Run Django's ``prefetch_related_objects`` in the current mode (maybe-async; None)."""
    instances = list(instances)
    if not instances or not lookups:
        return ready(None)
    return call_with_io(lambda: _prefetch(instances, lookups))


def _prefetch(instances: list[Any], lookups: tuple[Any, ...]) -> None:
    with querycache.prefetching():
        _django_prefetch(instances, *lookups)


# -- the prefetching querysets of a VinylModel's to-many relations, recorded -----------------------
#
# Django's related managers build the query of a prefetch in get_prefetch_querysets() by
# changing the query in place (``_filter_prefetch_queryset``: ``query.add_q(...)``), which takes
# the queryset off the structural query cache. For the relations of VinylModels whose related
# model's default manager makes VinylQuerySets, vinyl's copies below build the same queryset with
# recorded steps (the same Django function, applied as a step), so a repeated prefetch skips
# building and compiling its query like any repeated queryset. A queryset that is not recorded
# (a Django QuerySet in a Prefetch, the cache switched off) takes Django's own method.


def _recorded(queryset: Any) -> bool:
    return getattr(queryset, "_vinyl_shape", None) is not None


def _base_queryset(manager: Any, instances: Any, querysets: Any) -> Any:
    """The prefetch's base queryset as Django's get_prefetch_querysets() starts it (hints and
    database), or None when it is not recorded: Django's own method then does the whole job."""
    if querysets:
        if len(querysets) != 1:
            raise ValueError(
                "querysets argument of get_prefetch_querysets() should have a length of 1."
            )
        queryset = querysets[0]
    else:  # Django's super().get_queryset()
        queryset = super(manager._vinyl_django_class, manager).get_queryset()
    if not _recorded(queryset):
        return None
    queryset._add_hints(instance=instances[0])
    return queryset.using(queryset._db or manager._db)


@mirrors(
    "django.db.models.fields.related_descriptors:"
    "create_reverse_many_to_one_manager.RelatedManager.get_prefetch_querysets"
)
def _reverse_many_to_one_prefetch(self: Any, instances: Any, querysets: Any = None) -> Any:
    queryset = _base_queryset(self, instances, querysets)
    if queryset is None:
        return self._vinyl_django_class.get_prefetch_querysets(self, instances, querysets)
    rel_obj_attr = self.field.get_local_related_value
    instance_attr = self.field.get_foreign_related_value
    instances_dict = {instance_attr(inst): inst for inst in instances}
    queryset = queryset._vinyl_prefetch_filter(self.field.name, instances)
    # Since we just bypassed this class' get_queryset(), we must manage the reverse relation
    # manually.
    for rel_obj in queryset:
        if not self.field.is_cached(rel_obj):
            instance = instances_dict[rel_obj_attr(rel_obj)]
            self.field.set_cached_value(rel_obj, instance)
    cache_name = self.field.remote_field.cache_name
    return queryset, rel_obj_attr, instance_attr, False, cache_name, False


@mirrors(
    "django.db.models.fields.related_descriptors:"
    "create_forward_many_to_many_manager.ManyRelatedManager.get_prefetch_querysets"
)
def _many_to_many_prefetch(self: Any, instances: Any, querysets: Any = None) -> Any:
    queryset = _base_queryset(self, instances, querysets)
    if queryset is None:
        return self._vinyl_django_class.get_prefetch_querysets(self, instances, querysets)
    queryset = queryset._vinyl_prefetch_filter(self.query_field_name, instances)
    # M2M: need to annotate the query in order to get the primary model that the secondary
    # model was actually related to. We know that there will already be a join on the join
    # table, so we can just add the select.
    # For non-autocreated 'through' models, can't assume we are dealing with PK values.
    fk = self.through._meta.get_field(self.source_field_name)
    join_table = fk.model._meta.db_table
    connection = connections[queryset.db]
    qn = connection.ops.quote_name
    queryset = queryset.extra(
        select={
            f"_prefetch_related_val_{f.attname}": f"{qn(join_table)}.{qn(f.column)}"
            for f in fk.local_related_fields
        }
    )
    return (
        queryset,
        lambda result: tuple(
            f.get_db_prep_value(getattr(result, f"_prefetch_related_val_{f.attname}"), connection)
            for f in fk.local_related_fields
        ),
        lambda inst: tuple(
            f.get_db_prep_value(getattr(inst, f.attname), connection)
            for f in fk.foreign_related_fields
        ),
        False,
        self.prefetch_cache_name,
        False,
    )


_manager_classes: dict[type, type] = {}


def _vinyl_manager_class(django_class: type, get_prefetch_querysets: Any) -> type:
    """Django's related manager class with vinyl's ``get_prefetch_querysets`` (one per class)."""
    found = _manager_classes.get(django_class)
    if found is None:
        attrs = {
            "get_prefetch_querysets": get_prefetch_querysets,
            "_vinyl_django_class": django_class,
        }
        found = type(f"Vinyl{django_class.__name__}", (django_class,), attrs)
        _manager_classes[django_class] = found
    return found


class VinylReverseManyToOneDescriptor(ReverseManyToOneDescriptor):
    """Django's reverse many-to-one accessor whose manager prefetches with recorded querysets."""

    @cached_property
    def related_manager_cls(self) -> type:
        django_class = super().related_manager_cls
        return _vinyl_manager_class(django_class, _reverse_many_to_one_prefetch)


class VinylManyToManyDescriptor(ManyToManyDescriptor):
    """Django's many-to-many accessor whose manager prefetches with recorded querysets."""

    @cached_property
    def related_manager_cls(self) -> type:
        django_class = super().related_manager_cls
        return _vinyl_manager_class(django_class, _many_to_many_prefetch)
