"""The model layer: VinylModel, VinylManager, VinylQuerySet and everything they do in both modes.

Modules, lowest first (each imports only the ones before it; see tests/test_layering.py):

* ``errors``, ``signals``, ``evaluation``: async mode's implicit-query errors, signals sent in
  the current mode, and how a lazy result is awaited, iterated or resolved;
* ``prefetch``: Django's ``prefetch_related_objects`` in the current mode;
* ``deletion``: Django's deletion ``Collector``, its queries run by vinyl;
* ``streaming``, ``raw``: ``iterator()`` over a server-side cursor, and ``raw()`` querysets;
* ``writes``: the queryset writes (``create``, ``bulk_create``, ``update``, ``delete`` …);
* ``queryset``: ``VinylQuerySet``, ``VinylManager``, ``as_vinyl``;
* ``instance``: the instance API (``save``, ``insert``, ``update``, ``delete``,
  ``refresh_from_db``), Django's save chain;
* ``guards``: relation and deferred-field descriptors that refuse lazy I/O in async mode;
* ``related_writes``, ``relations``: ``obj.q.<relation>`` and its related-manager writes;
* ``base``: ``VinylModel``.
"""

from .base import VinylModel
from .errors import ImplicitQueryError
from .queryset import VinylManager, VinylQuerySet, as_vinyl

__all__ = ["ImplicitQueryError", "VinylManager", "VinylModel", "VinylQuerySet", "as_vinyl"]
