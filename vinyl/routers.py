"""Read replicas with read-your-writes: a database router, its pin, and replica health.

:class:`PrimaryReplicaRouter` sends reads to replicas and writes to the primary. After a write
(any ``db_for_write`` call: ``save()``, ``create()``, ``update()``, ``select_for_update()`` …), the
reads of the same request go to the primary for ``pin_seconds``, so the request never reads a
replica that has not replayed its own write yet; inside an ``atomic()`` block on the primary, reads
go to the primary too. Configure it in settings::

    DATABASE_ROUTERS = ["vinyl.routers.PrimaryReplicaRouter"]
    VINYL_REPLICA_ROUTER = {"primary": "default", "replicas": ["replica"], "pin_seconds": 5.0}

The pin lives in a context variable, not a thread-local: in async mode many requests share one
thread, and each task is pinned on its own. :func:`pin_scope` (or :class:`ReadYourWritesMiddleware`,
which opens one per request) makes the pin one object for the whole request, so a write in a child
task or in a ``sync_to_async`` thread pins the request's other reads as well. Without a scope, a
write pins the current context (the task, or the thread) and whatever it starts afterwards.

Replica health: the router does no I/O. When vinyl cannot get a connection of a replica for a read
(the server refuses connections, its pool lends none within its ``timeout``, or the connection died
outside a transaction), it asks the router
(:meth:`PrimaryReplicaRouter.vinyl_read_fallback`), which marks that replica down for
``down_seconds``, logs a warning and names the alias to read from instead (another replica that is
up, else the primary); the read is run there, and the router sends no read to the replica until the
time is over. ``fallback=False`` makes such reads fail instead.
"""

from __future__ import annotations

import contextvars
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connections

from .db.pins import current_pin
from .flags import is_async

__all__ = [
    "PrimaryReplicaRouter",
    "ReadYourWritesMiddleware",
    "is_down",
    "mark_down",
    "pin_primary",
    "pin_scope",
    "pinned",
]

logger = logging.getLogger("vinyl.routers")

SETTING = "VINYL_REPLICA_ROUTER"
DEFAULTS: dict[str, Any] = {
    "primary": "default",
    "replicas": (),
    "pin_seconds": 5.0,
    "fallback": True,
    "down_seconds": 10.0,
}


# -- the read-your-writes pin ------------------------------------------------------------------


class _Pin:
    """Until when the reads of one request (or context) go to the primary (a monotonic time)."""

    __slots__ = ("until",)

    def __init__(self) -> None:
        self.until = 0.0


_pin: contextvars.ContextVar[_Pin | None] = contextvars.ContextVar(
    "vinyl_replica_pin", default=None
)


@contextmanager
def pin_scope() -> Iterator[None]:
    """Scope the read-your-writes pin to the block: one request (``with``, in either mode).

    The block starts unpinned; a write anywhere inside it (child tasks and threads that inherit
    the context included) pins every read of the block to the primary.
    """
    token = _pin.set(_Pin())
    try:
        yield
    finally:
        _pin.reset(token)


def pin_primary(seconds: float | None = None) -> None:
    """Send the reads of the current scope (or context) to the primary for *seconds*.

    The router calls it on every write; call it yourself after writes it cannot see (raw SQL on a
    cursor). *seconds* defaults to the setting's ``pin_seconds``.
    """
    if seconds is None:
        seconds = _configured()["pin_seconds"]
    pin = _pin.get()
    if pin is None:
        pin = _Pin()
        _pin.set(pin)
    pin.until = max(pin.until, time.monotonic() + seconds)


def pinned() -> bool:
    """Whether the current scope's reads go to the primary because of a recent write."""
    pin = _pin.get()
    return pin is not None and pin.until > time.monotonic()


class ReadYourWritesMiddleware:
    """Django middleware (sync and async): each request gets its own :func:`pin_scope`."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        from asgiref.sync import iscoroutinefunction, markcoroutinefunction

        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: Any) -> Any:
        if self.is_async:
            return self._acall(request)
        with pin_scope():
            return self.get_response(request)

    async def _acall(self, request: Any) -> Any:
        with pin_scope():
            return await self.get_response(request)


# -- replica health ----------------------------------------------------------------------------

# A replica's state is a fact about a server, shared by every task, thread and event loop.
_down_until: dict[str, float] = {}
_down_lock = threading.Lock()


def mark_down(alias: str, seconds: float) -> bool:
    """Send no reads to *alias* for *seconds*; return False if it was marked down already."""
    with _down_lock:
        already = is_down(alias)
        _down_until[alias] = time.monotonic() + seconds
        return not already


def is_down(alias: str) -> bool:
    """Whether *alias* was marked down and its time is not over yet."""
    until = _down_until.get(alias)
    return until is not None and until > time.monotonic()


# -- the router --------------------------------------------------------------------------------


def _configured() -> dict[str, Any]:
    return {**DEFAULTS, **getattr(settings, SETTING, {})}


def _in_transaction(alias: str) -> bool:
    """Whether the current task (async mode) or thread (sync mode) is in atomic() on *alias*."""
    if is_async():
        return current_pin(alias) is not None
    return connections[alias].in_atomic_block


class PrimaryReplicaRouter:
    """A Django database router: reads to replicas, writes (and a request's later reads) to the
    primary.

    Every argument defaults to the ``VINYL_REPLICA_ROUTER`` setting's key of the same name:
    ``primary`` (an alias, ``"default"``), ``replicas`` (aliases), ``pin_seconds`` (how long reads
    stay on the primary after a write, 5.0), ``fallback`` (read from the primary when every
    replica is down, True) and ``down_seconds`` (how long a replica that could not be reached gets
    no reads, 10.0). Give the class's dotted path in ``DATABASE_ROUTERS``, or an instance.
    """

    def __init__(
        self,
        primary: str | None = None,
        replicas: list[str] | tuple[str, ...] | None = None,
        pin_seconds: float | None = None,
        fallback: bool | None = None,
        down_seconds: float | None = None,
    ) -> None:
        given = {"primary": primary, "replicas": replicas, "pin_seconds": pin_seconds,
                 "fallback": fallback, "down_seconds": down_seconds}  # fmt: skip
        conf = {**_configured(), **{k: v for k, v in given.items() if v is not None}}
        self.primary: str = conf["primary"]
        self.replicas: tuple[str, ...] = tuple(conf["replicas"])
        self.pin_seconds = float(conf["pin_seconds"])
        self.fallback = bool(conf["fallback"])
        self.down_seconds = float(conf["down_seconds"])
        known = connections.settings
        for alias in (self.primary, *self.replicas):
            if alias not in known:
                raise ImproperlyConfigured(
                    f"PrimaryReplicaRouter: database {alias!r} is not in DATABASES; check "
                    f"settings.{SETTING} (or the router's arguments)."
                )
        if not self.replicas:
            raise ImproperlyConfigured(
                f"PrimaryReplicaRouter needs at least one replica alias: set "
                f'settings.{SETTING} = {{"replicas": ["replica"], ...}}.'
            )

    def db_for_read(self, model: Any, **hints: Any) -> str:
        if pinned() or _in_transaction(self.primary):
            return self.primary
        return self._replica()

    def db_for_write(self, model: Any, **hints: Any) -> str:
        pin_primary(self.pin_seconds)
        return self.primary

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool | None:
        ours = {self.primary, *self.replicas}
        if obj1._state.db in ours and obj2._state.db in ours:
            return True  # the same data
        return None

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool | None:
        return False if db in self.replicas else None  # a replica gets the primary's schema

    def _replica(self) -> str:
        up = [alias for alias in self.replicas if not is_down(alias)]
        if up:
            return up[0] if len(up) == 1 else random.choice(up)
        return self.primary if self.fallback else self.replicas[0]

    def vinyl_read_fallback(self, alias: str, error: BaseException) -> str | None:
        """Where vinyl should run a read that could not get a connection of *alias*.

        vinyl calls this (no other code needs to); it returns None when *alias* is not one of
        this router's replicas or ``fallback`` is off, so the read fails with *error*.
        """
        if alias not in self.replicas or not self.fallback:
            return None
        newly_down = mark_down(alias, self.down_seconds)
        instead = self._replica()
        if newly_down:
            logger.warning(
                "Read replica %r is unreachable (%s); its reads go to %r for the next %g s.",
                alias, str(error).strip() or type(error).__name__, instead, self.down_seconds,
            )  # fmt: skip
        return instead
