"""Deletes in both modes with Django's rules: Django's ``Collector`` decides, vinyl runs the I/O.

``collect()`` runs ``Collector.collect()`` — read-only logic (cascades, PROTECT/RESTRICT, SET_*,
fast deletes, multi-table parents, generic relations) with queries in the middle — through
:func:`vinyl.compiler.replay.call_with_io`: each pass builds a fresh collector, so replaying it is safe.

``delete_collected()`` mirrors ``Collector.delete()`` as a ``@maybe_async`` generator: its
statements sit between pre_delete and post_delete signals and instance bookkeeping, which a
replay would repeat. The SQL is Django's (``DeleteQuery``/``UpdateQuery``) on vinyl's compilers.
"""

from __future__ import annotations

from collections import Counter
from functools import reduce
from operator import attrgetter, or_
from typing import Any

from django.db import models
from django.db.models import signals, sql
from django.db.models.deletion import Collector
from django.db.models.sql.constants import GET_ITERATOR_CHUNK_SIZE, ROW_COUNT

from ..compat import mirrors
from ..compiler.compilers import compiler_of
from ..compiler.replay import call_with_io
from ..compiler.statements import update_query
from ..db.transaction import in_atomic, mark_for_rollback_on_error
from ..futures import maybe_async
from .signals import send

__all__ = ["collect", "delete_collected"]


def collect(using: str, origin: Any, objs: Any, **kwargs: Any) -> Any:
    """Return a Collector that has collected *objs* (maybe-async), as Django's delete() does."""

    def run() -> Collector:
        collector = Collector(using=using, origin=origin)
        collector.collect(objs, **kwargs)
        return collector

    return call_with_io(run)


@mirrors("django.db.models.sql.subqueries:DeleteQuery.delete_batch")
@maybe_async
def _delete_batch(model: Any, pk_list: list[Any], using: str):
    # DeleteQuery.delete_batch(): one DELETE per chunk of pks.
    num_deleted = 0
    field = model._meta.pk
    for offset in range(0, len(pk_list), GET_ITERATOR_CHUNK_SIZE):
        query = sql.DeleteQuery(model)
        query.add_filter(f"{field.attname}__in", pk_list[offset : offset + GET_ITERATOR_CHUNK_SIZE])
        table = model._meta.db_table
        query.alias_map = {table: query.alias_map[table]}
        num_deleted += (yield compiler_of(query, using).vinyl_execute_sql(ROW_COUNT)) or 0
    return num_deleted


@mirrors("django.db.models.query:QuerySet._raw_delete")
@maybe_async
def _raw_delete(queryset: Any, using: str):
    # QuerySet._raw_delete(): one DELETE of what the queryset selects.
    query = queryset.query.clone()
    query.__class__ = sql.DeleteQuery
    return (yield compiler_of(query, using).vinyl_execute_sql(ROW_COUNT)) or 0


@mirrors("django.db.models.sql.subqueries:UpdateQuery.update_batch")
@maybe_async
def _update_batch(model: Any, pk_list: list[Any], values: dict[str, Any], using: str):
    # UpdateQuery.update_batch()
    for offset in range(0, len(pk_list), GET_ITERATOR_CHUNK_SIZE):
        query = sql.UpdateQuery(model)
        query.add_update_values(values)
        query.add_filter("pk__in", pk_list[offset : offset + GET_ITERATOR_CHUNK_SIZE])
        yield update_query(query, using)


@maybe_async
def _update_queryset(queryset: Any, values: dict[str, Any], using: str):
    # QuerySet.update() of the field updates (SET_NULL, SET_DEFAULT, SET()).
    query = queryset.query.chain(sql.UpdateQuery)
    query.add_update_values(values)
    query.clear_select_clause()
    return (yield update_query(query, using))


@mirrors("django.db.models.deletion:Collector.delete")
@maybe_async
def delete_collected(collector: Collector):
    """Delete what *collector* collected, as ``Collector.delete()``; ``(count, {label: n})``."""
    # Copied from Django's Collector.delete() (5.2 and 6.1 agree): its I/O sits between the
    # signals and the bookkeeping, see the module docstring.
    using = collector.using
    for model, instances in collector.data.items():
        collector.data[model] = sorted(instances, key=attrgetter("pk"))
    collector.sort()
    deleted_counter: Counter[str] = Counter()

    # A single object with no dependencies: one DELETE, no signals, no transaction.
    if len(collector.data) == 1 and len(instances) == 1:
        instance = list(instances)[0]
        if collector.can_fast_delete(instance):
            with mark_for_rollback_on_error(using):
                count = yield _delete_batch(model, [instance.pk], using)
            setattr(instance, model._meta.pk.attname, None)
            return count, {model._meta.label: count}

    yield in_atomic(using, _delete_phase, collector, deleted_counter)
    for model, instances in collector.data.items():
        for instance in instances:
            setattr(instance, model._meta.pk.attname, None)
    return sum(deleted_counter.values()), dict(deleted_counter)


@maybe_async
def _delete_phase(collector: Collector, deleted_counter: Counter[str]):
    using = collector.using
    for model, obj in collector.instances_with_model():
        if not model._meta.auto_created:
            yield send(
                signals.pre_delete, sender=model, instance=obj, using=using,
                origin=collector.origin,
            )  # fmt: skip
    for qs in collector.fast_deletes:
        count = yield _raw_delete(qs, using)
        if count:
            deleted_counter[qs.model._meta.label] += count
    for (field, value), instances_list in collector.field_updates.items():
        updates = []
        objs = []
        for instances in instances_list:
            if isinstance(instances, models.QuerySet) and instances._result_cache is None:
                updates.append(instances)
            else:
                objs.extend(instances)
        if updates:
            yield _update_queryset(reduce(or_, updates), {field.name: value}, using)
        if objs:
            model = objs[0].__class__
            yield _update_batch(model, list({obj.pk for obj in objs}), {field.name: value}, using)
    for instances in collector.data.values():
        instances.reverse()
    for model, instances in collector.data.items():
        count = yield _delete_batch(model, [obj.pk for obj in instances], using)
        if count:
            deleted_counter[model._meta.label] += count
        if not model._meta.auto_created:
            for obj in instances:
                yield send(
                    signals.post_delete, sender=model, instance=obj, using=using,
                    origin=collector.origin,
                )  # fmt: skip
