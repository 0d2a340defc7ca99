"""Put vinyl in place on the models of Django's own test suite, and count what ran where.

Django's tests are not edited. Once the test apps are loaded, :func:`install` changes the
*classes of the test run's models* (and nothing of Django's or vinyl's own modules):

* **Managers.** Each model's ``_meta`` gets a subclass of Django's ``Options`` whose managers
  (declared, inherited, ``_default_manager``, ``_base_manager``, also when Django recomputes
  them) get a subclass of their own class as ``__class__``, whose queryset class is the model's
  own mixed with :class:`HarnessQuerySet` (a ``VinylQuerySet``); classes keep their names. So
  ``Model.objects…``, custom managers and querysets, Django's related managers (built from the
  default manager's class) and lazy relation loads (the base manager) all read through vinyl,
  and Django's a-methods on them are vinyl's native ones.
* **Instances.** A model class whose bases hold ``models.Model`` gets :class:`HarnessInstance`
  (VinylModel's instance API as a plain mixin) before it, so ``save()``, ``delete()``,
  ``refresh_from_db()`` and their a-methods are vinyl's, and a model's own ``save()`` override
  reaches vinyl's through ``super()``.
* **Related writes.** Django builds one related-manager class per relation
  (``related_manager_cls``); its ``add``/``create``/``get_or_create``/``update_or_create``/
  ``remove``/``clear``/``set`` and their a-methods are replaced on that class by vinyl's related
  writes (``obj.q.<relation>``'s). Generic relations keep Django's writes (vinyl has none).

Why patch classes rather than edit the tests: the point is to run thousands of tests nobody here
wrote, unchanged, with every ORM entry point they touch going through vinyl.

In *driven* mode (the harness's third leg) every such entry point, when called from sync code
(no event loop running in the thread: the test's own code, or Django's sync code it calls), runs
the vinyl operation in async mode on an event loop of the thread and waits for it there; called
from inside a running operation it behaves as vinyl does. Each test's operations are thus
awaited on vinyl's async connections, as an ASGI view's would be.

The counters (:data:`OPS`: vinyl operations by mode; :data:`THREADED`: Django ORM functions run
through ``sync_to_async``, i.e. Django's thread-based a-methods) prove that vinyl really ran; the
runner writes them out per process.
"""

from __future__ import annotations

import asyncio
import contextvars
import copyreg
import functools
import inspect
import threading
from collections import Counter
from typing import Any

from asgiref import sync as asgiref_sync
from django.apps import apps
from django.db import connections, models
from django.db.models.fields.related_descriptors import (
    ManyToManyDescriptor,
    ReverseManyToOneDescriptor,
)
from django.db.models.options import Options
from django.db.models.query import QuerySet
from django.utils.functional import cached_property

import vinyl
from vinyl import VinylModel, VinylQuerySet
from vinyl.compiler.replay import in_worker
from vinyl.model.instance import InstanceWrites  # VinylModel's instance API, without its managers

OPS: Counter[str] = Counter()  # "sync get", "async save" …: vinyl operations started, by mode
THREADED: Counter[str] = Counter()  # "QuerySet.get" …: Django ORM callables given to sync_to_async

_driven = False  # the third leg: vinyl operations called from sync code run in async mode


# -- counting Django's thread-based a-methods ---------------------------------------------------


def count_threaded_calls() -> None:
    """Count each Django ORM callable that ``sync_to_async`` wraps (Django's a-methods do):
    functions of ``django.db.models`` and methods of models, managers and querysets.

    Wraps asgiref's ``SyncToAsync.__init__`` in this test process: test tooling, never vinyl.
    """
    original = asgiref_sync.SyncToAsync.__init__
    if getattr(original, "_harness", False):
        return

    @functools.wraps(original)
    def __init__(self: Any, func: Any, *args: Any, **kwargs: Any) -> None:
        target = getattr(func, "__func__", func)
        module = getattr(target, "__module__", "") or ""
        owner = getattr(func, "__self__", None)
        if module.startswith("django.db.models") or isinstance(
            owner, models.Model | models.Manager | QuerySet
        ):
            THREADED[getattr(target, "__qualname__", repr(target))] += 1
        original(self, func, *args, **kwargs)

    __init__._harness = True  # type: ignore[attr-defined]
    asgiref_sync.SyncToAsync.__init__ = __init__  # type: ignore[method-assign]


# -- driving operations on an event loop (third leg) ---------------------------------------------

_loops = threading.local()


def _needs_driving() -> bool:
    """Whether an operation is the test's own sync call, to be driven on this thread's loop.

    Not in vinyl's worker thread (``vinyl.compiler.replay``: a Django function vinyl replays, a
    synchronous save() override): its queries and operations go to the calling task on the
    test's loop, as they do for any async caller. A loop driven in that worker would run them
    apart from the test (the worker's ``connections`` are vinyl's compile-only ones).
    """
    return (
        _driven
        and asyncio._get_running_loop() is None
        and not vinyl.is_async()
        and not in_worker()  # sync code vinyl runs for an async caller (a save() override)
    )


def _runner() -> asyncio.Runner:
    runner = getattr(_loops, "runner", None)
    if runner is None:
        runner = _loops.runner = asyncio.Runner()
    return runner


def _run_logged(make: Any) -> Any:
    """Run the coroutine ``make()`` returns on this thread's event loop; return its result.

    Django's ``connections`` gives async code a connection object of its task, not the thread's;
    vinyl logs async statements there. When the test's (thread's) connection logs queries
    (``assertNumQueries``, ``CaptureQueriesContext``), the statements logged in the task are
    appended to the thread's log, as if the test had awaited them in one context.
    """
    logging = [
        (alias, connections[alias]) for alias in connections if connections[alias].queries_logged
    ]

    async def run() -> Any:
        tasks = []
        for alias, thread_connection in logging:
            task_connection = connections[alias]
            task_connection.force_debug_cursor = True
            tasks.append((thread_connection, task_connection, len(task_connection.queries_log)))
        try:
            return await make()
        finally:
            for thread_connection, task_connection, start in tasks:
                thread_connection.queries_log.extend(list(task_connection.queries_log)[start:])

    return _runner().run(run(), context=contextvars.copy_context())


def drive(call: Any) -> Any:
    """Call ``call()`` in async mode on this thread's event loop and return what it awaits to."""

    async def run() -> Any:
        with vinyl.async_mode():
            value = call()
        return (await value) if inspect.isawaitable(value) else value

    return _run_logged(run)


def close_loops() -> None:
    """Close this thread's event loop (and vinyl's pools on it)."""
    runner = getattr(_loops, "runner", None)
    if runner is not None:
        runner.run(vinyl.close_pools())
        runner.close()
        _loops.runner = None


def _driven_iterator(stream: Any) -> Any:
    """Iterate an async stream from sync code, one ``__anext__`` per loop run."""
    try:
        while True:
            try:
                yield _run_logged(stream.__anext__)
            except StopAsyncIteration:
                return
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            _run_logged(aclose)


def _counted(name: str, method: Any) -> Any:
    """*method* counted in :data:`OPS` and, when driven, run in async mode on the loop."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        if _needs_driving():
            OPS[f"async {name}"] += 1
            return drive(lambda: method(self, *args, **kwargs))
        OPS[f"{'async' if vinyl.is_async() or in_worker() else 'sync'} {name}"] += 1
        return method(self, *args, **kwargs)

    return wrapper


# -- the queryset, model and related-manager classes ----------------------------------------------

_QUERYSET_OPS = (
    "get", "first", "last", "earliest", "latest", "count", "exists", "contains", "aggregate",
    "in_bulk", "explain", "create", "get_or_create", "update_or_create", "bulk_create",
    "bulk_update", "update", "delete",
)  # fmt: skip


class HarnessQuerySet(VinylQuerySet):
    """vinyl's queryset, its operations counted (and driven on a loop in the third leg)."""

    def _fetch_all(self) -> None:
        if self._result_cache is not None and (
            self._prefetch_done or not self._prefetch_related_lookups
        ):
            return
        if _needs_driving():
            OPS["async fetch"] += 1
            drive(self._fetch)
            return
        OPS[f"{'async' if vinyl.is_async() or in_worker() else 'sync'} fetch"] += 1
        super()._fetch_all()

    def iterator(self, chunk_size: int | None = None) -> Any:
        if _needs_driving():
            OPS["async iterator"] += 1
            with vinyl.async_mode():
                stream = super().iterator(chunk_size)
            return _driven_iterator(stream)
        OPS[f"{'async' if vinyl.is_async() or in_worker() else 'sync'} iterator"] += 1
        return super().iterator(chunk_size)

    def __reduce__(self) -> Any:
        # Pickled as the test's own queryset class, so a pickle never names a harness class.
        return (_unpickle_queryset, (_original.get(type(self), QuerySet), self.__getstate__()))


for _name in _QUERYSET_OPS:
    setattr(HarnessQuerySet, _name, _counted(_name, getattr(VinylQuerySet, _name)))


def _unpickle_queryset(cls: type, state: dict) -> Any:
    qs = cls.__new__(queryset_class(cls))
    qs.__setstate__(state)
    return qs


_queryset_classes: dict[type, type] = {}
_original: dict[type, type] = {}


def queryset_class(cls: type) -> type:
    """Return *cls* (a QuerySet class) mixed with HarnessQuerySet, under *cls*'s name."""
    if issubclass(cls, HarnessQuerySet):
        return cls
    found = _queryset_classes.get(cls)
    if found is None:
        if cls is QuerySet or cls is VinylQuerySet:
            found = HarnessQuerySet
        else:
            found = type(cls.__name__, (cls, HarnessQuerySet), {"__module__": cls.__module__})
            found.__qualname__ = cls.__qualname__
        _queryset_classes[cls] = found
        _original[found] = cls
    return found


_manager_classes: dict[type, type] = {}
_original_managers: dict[type, type] = {}


def _manager_class(cls: type) -> type:
    if getattr(cls, "_harness", False):
        return cls
    found = _manager_classes.get(cls)
    if found is None:
        found = type(
            cls.__name__,
            (cls,),
            {
                "__module__": cls.__module__,
                "_queryset_class": queryset_class(cls._queryset_class),
                "_harness": True,
                "__reduce__": _reduce_manager,
            },
        )
        found.__qualname__ = cls.__qualname__
        _manager_classes[cls] = found
        _original_managers[found] = cls
    return found


def _unpickle_manager(cls: type, state: dict) -> Any:
    manager = cls.__new__(_manager_class(cls))
    manager.__dict__.update(state)
    return manager


def _reduce_manager(self: Any) -> Any:
    # Pickled as the model's own manager class, so a pickle never names a harness class.
    cls = type(self)
    if cls in _original_managers:
        return (_unpickle_manager, (_original_managers[cls], self.__dict__.copy()))
    return (copyreg.__newobj__, (cls,), self.__dict__.copy())  # e.g. copy.copy(related manager)


class _HarnessOptions(Options):
    """A model's ``_meta`` whose managers (also when Django recomputes them) are the harness's."""

    @cached_property
    def managers(self) -> Any:
        managers = Options.managers.func(self)
        for manager in managers:
            manager.__class__ = _manager_class(type(manager))
        return managers

    @cached_property
    def base_manager(self) -> Any:
        manager = Options.base_manager.func(self)
        manager.__class__ = _manager_class(type(manager))
        return manager


def _install_managers(model: type) -> None:
    opts = model._meta
    if not isinstance(opts, _HarnessOptions):
        opts.__class__ = _HarnessOptions
        for name in ("managers", "managers_map", "base_manager", "default_manager"):
            opts.__dict__.pop(name, None)


class HarnessInstance(InstanceWrites):
    """VinylModel's instance API (``save``, ``delete``, ``refresh_from_db``, their a-methods, ``q``),
    counted (and driven in the third leg); a plain mixin, so no manager of VinylModel's comes
    with it."""

    q = VinylModel.q


for _name in ("save", "delete", "refresh_from_db", "asave", "adelete", "arefresh_from_db"):
    setattr(HarnessInstance, _name, _counted(_name, getattr(VinylModel, _name)))


def _rebase(model: type) -> None:
    for cls in model.__mro__:
        if models.Model in cls.__bases__ and not issubclass(cls, HarnessInstance):
            cls.__bases__ = tuple(
                base
                for b in cls.__bases__
                for base in ((HarnessInstance, b) if b is models.Model else (b,))
            )


_RELATED_WRITES = ("add", "create", "get_or_create", "update_or_create", "remove", "clear", "set")


def _related_write(name: str) -> Any:
    from vinyl.relations import RelatedManager  # obj.q.<relation>'s manager

    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        return getattr(RelatedManager(self), name)(*args, **kwargs)

    method.__name__ = method.__qualname__ = name
    method.alters_data = True  # type: ignore[attr-defined]

    async def amethod(self: Any, *args: Any, **kwargs: Any) -> Any:
        return await getattr(RelatedManager(self), f"a{name}")(*args, **kwargs)

    amethod.__name__ = amethod.__qualname__ = f"a{name}"
    amethod.alters_data = True  # type: ignore[attr-defined]
    return _counted(f"related {name}", method), _counted(f"related a{name}", amethod)


_related_methods = {name: _related_write(name) for name in _RELATED_WRITES}


def _install_related(model: type) -> None:
    for attr in list(vars(model).values()):
        if not isinstance(attr, ReverseManyToOneDescriptor | ManyToManyDescriptor):
            continue
        if type(attr).__module__.startswith("django.contrib.contenttypes"):
            continue  # generic relations: vinyl has no writes for them
        attr.__dict__.pop("related_manager_cls", None)  # built again from the new managers
        cls = attr.related_manager_cls
        if "_harness_writes" in vars(cls):
            continue
        for write, (method, amethod) in _related_methods.items():
            if write in vars(cls):
                setattr(cls, write, method)
                setattr(cls, f"a{write}", amethod)
        cls._harness_writes = True


def install(driven: bool = False) -> None:
    """Put vinyl in place on every installed model (see the module docstring)."""
    global _driven
    _driven = driven
    all_models = apps.get_models(include_auto_created=True, include_swapped=True)
    for model in all_models:
        _install_managers(model)
    for model in all_models:
        _rebase(model)
    for model in all_models:
        _install_related(model)
