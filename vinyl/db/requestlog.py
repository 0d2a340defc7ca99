"""Per-request query logs and an N+1 detector, in both modes.

A :class:`QueryLog` records every statement vinyl runs in the context that entered it (a
contextvar: the current task or thread and the tasks and threads it starts), so concurrent
requests on one event loop each get their own list, which Django's per-connection
``connection.queries`` cannot give. :class:`QueryLogMiddleware` opens one per HTTP request of an
ASGI application.

When one statement *shape* (the SQL with its literals, parameter lists and comments normalised)
runs ``n_plus_one`` times or more in one log, the log reports it once, naming the line of user
code that issued it: a :class:`NPlusOneWarning` by default (pytest's ``filterwarnings = error``
turns it into a failure), or :class:`NPlusOneError` raised at the statement with
``on_n_plus_one="raise"``, or a ``vinyl.querylog`` log record with ``"log"``.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import warnings
from typing import Any, NamedTuple

from ..futures.driver import _drive_async, _drive_sync
from .querylog import TRANSACTION_CONTROL, _watch, watching

__all__ = ["NPlusOneError", "NPlusOneWarning", "Query", "QueryLog", "QueryLogMiddleware"]

logger = logging.getLogger("vinyl.querylog")

ACTIONS = ("warn", "raise", "log")


class NPlusOneWarning(UserWarning):
    """One statement shape ran ``n_plus_one`` times or more in one query log."""


class NPlusOneError(Exception):
    """One statement shape ran ``n_plus_one`` times or more (``on_n_plus_one="raise"``)."""


class Query(NamedTuple):
    """One statement of a :class:`QueryLog`."""

    sql: str
    params: Any
    duration: float  # seconds
    alias: str
    origin: str | None  # "path/to/file.py:42 in function", the user code that issued it


class QueryLog:
    """Record the statements vinyl runs in this context; report repeated statement shapes.

    ``with QueryLog(n_plus_one=5) as log: ...`` then ``log.queries`` (a list of :class:`Query`),
    ``log.total_time``, ``log.repeated`` (the reported shapes). ``n_plus_one=None`` turns the
    detector off. *label* names the log in messages (the middleware uses "GET /path").
    """

    def __init__(
        self, label: str = "", n_plus_one: int | None = 5, on_n_plus_one: str = "warn"
    ) -> None:
        if on_n_plus_one not in ACTIONS:
            raise ValueError(f"on_n_plus_one must be one of {ACTIONS}, not {on_n_plus_one!r}")
        if n_plus_one is not None and n_plus_one < 2:
            raise ValueError(f"n_plus_one must be 2 or more (or None), not {n_plus_one!r}")
        self.label = label
        self.n_plus_one = n_plus_one
        self.on_n_plus_one = on_n_plus_one
        self.queries: list[Query] = []
        self.repeated: list[tuple[str, int, str | None]] = []  # (shape, count, origin)
        self._counts: dict[str, int] = {}
        self._token: Any = None

    @staticmethod
    def current() -> QueryLog | None:
        """Return the innermost QueryLog of this context (the request's, say), if any."""
        watch = _watch.get()
        for recorder in reversed(watch.recorders if watch else ()):
            if isinstance(recorder, QueryLog):
                return recorder
        return None

    @property
    def total_time(self) -> float:
        """Seconds spent in the recorded statements."""
        return sum(q.duration for q in self.queries)

    def __enter__(self) -> QueryLog:
        if self._token is not None:
            raise RuntimeError("a QueryLog can be entered once at a time")
        self._token = watching(recorder=self)
        return self

    def __exit__(self, *exc: object) -> None:
        _watch.reset(self._token)
        self._token = None
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "%s%d statements, %.1f ms in the database",
                f"{self.label}: " if self.label else "",
                len(self.queries),
                self.total_time * 1000,
            )

    def record(self, sql: Any, params: Any, duration: float, alias: str) -> None:
        """Called by vinyl.querylog for each statement of this context."""
        sql = str(sql)
        frame = origin()
        where = None if frame is None else f"{frame[0]}:{frame[1]} in {frame[2]}"
        self.queries.append(Query(sql, params, duration, alias, where))
        if self.n_plus_one is None or sql.startswith(TRANSACTION_CONTROL):
            return
        key = shape(sql)
        count = self._counts[key] = self._counts.get(key, 0) + 1
        if count == self.n_plus_one:
            self._report(key, count, frame, where)

    def _report(self, key: str, count: int, frame: Any, where: str | None) -> None:
        self.repeated.append((key, count, where))
        shown = key if len(key) <= 300 else key[:297] + "..."
        if key.startswith(("SELECT", "WITH")):
            advice = "fetch these rows in one query (select_related, prefetch_related, __in)"
        else:
            advice = "batch these writes (bulk_create, bulk_update, one queryset update())"
        message = (
            f"N+1 queries{' in ' + self.label if self.label else ''}: the same statement ran "
            f"{count} times, the last from {where or 'an unknown line'}: {shown} -- {advice}"
        )
        if self.on_n_plus_one == "raise":
            raise NPlusOneError(message)
        if self.on_n_plus_one == "log":
            logger.warning(message)
        elif frame is None:
            warnings.warn(message, NPlusOneWarning, stacklevel=2)
        else:
            # One registry, as a module's __warningregistry__: the "default" filter then shows
            # each message once, not once per request.
            warnings.warn_explicit(
                message, NPlusOneWarning, frame[0], frame[1], registry=_warning_registry
            )


_warning_registry: dict[Any, Any] = {}


class QueryLogMiddleware:
    """ASGI middleware: a :class:`QueryLog` for each HTTP request (``log.label`` = "GET /path").

    ``application = QueryLogMiddleware(get_asgi_application(), n_plus_one=5)``; the keyword
    arguments are QueryLog's. Each request's summary is logged at DEBUG on ``vinyl.querylog``.
    """

    def __init__(self, app: Any, **options: Any) -> None:
        QueryLog(**options)  # bad options fail here, at start-up
        self.app = app
        self.options = options

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        label = f"{scope.get('method', '')} {scope.get('path', '')}"
        with QueryLog(label, **self.options):
            await self.app(scope, receive, send)


# -- statement shapes ----------------------------------------------------------------------------

_NORMALISE = [
    (re.compile(r"/\*.*?\*/", re.S), ""),  # comments (sqlcommenter's included)
    (re.compile(r"'(?:[^']|'')*'"), "%s"),  # string literals
    (re.compile(r"(?<![\w\"])-?\d+(?:\.\d+)?\b"), "%s"),  # numbers, not inside identifiers
    (re.compile(r"\(\s*%s(?:\s*,\s*%s)*\s*\)"), "(%s, ...)"),  # IN lists of any length
    (re.compile(r"\s+"), " "),
]
_shapes: dict[str, str] = {}


def shape(sql: str) -> str:
    """Return *sql* with literals, parameter lists and comments normalised (an N+1 key)."""
    found = _shapes.get(sql)
    if found is None:
        found = sql
        for pattern, replacement in _NORMALISE:
            found = pattern.sub(replacement, found)
        found = found.strip()
        if len(_shapes) >= 4096:
            _shapes.clear()
        _shapes[sql] = found
    return found


# -- the user code that issued a statement -----------------------------------------------------


def _folder(module: Any) -> str:
    return os.path.dirname(os.path.abspath(module.__file__)) + os.sep


def _library_folders() -> tuple[str, ...]:
    import contextlib
    import threading

    import django

    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # vinyl/
    folders = [package + os.sep, _folder(django)]
    for name in ("asyncio", "anyio", "asgiref", "psycopg", "psycopg_pool", "concurrent.futures"):
        module = sys.modules.get(name)  # read by name: this module must not import asyncio
        if module is not None:
            folders.append(_folder(module))
    files = [os.path.abspath(m.__file__) for m in (contextlib, threading)]
    return (*folders, *files)


_LIBRARIES: tuple[str, ...] | None = None
_skipped: dict[Any, bool] = {}


def _is_library(code: Any) -> bool:
    global _LIBRARIES
    if _LIBRARIES is None:
        _LIBRARIES = _library_folders()
    filename = code.co_filename
    found = _skipped[code] = filename.startswith(_LIBRARIES) or filename.startswith("<frozen")
    return found


_DRIVERS = (_drive_async.__code__, _drive_sync.__code__)


def origin() -> tuple[str, int, str] | None:
    """Return (file, line, function) of the innermost user code on the stack.

    User code is the first frame outside vinyl, Django, asyncio, anyio, asgiref and psycopg. In
    async mode, the ``@maybe_async`` generators that wait on the one running are not on Python's
    stack: the driver holds them (``waiting``, innermost last, and ``gen`` while it awaits a
    value for it), and they are looked at where it stands. So is a generator in sync mode while
    its driver resolves a queryset it yielded.
    """
    frame = sys._getframe(1)
    skipped = _skipped
    while frame is not None:
        code = frame.f_code
        library = skipped.get(code)
        if library is None:
            library = _is_library(code)
        if code in _DRIVERS:
            local = frame.f_locals
            running = local.get("gen")  # on the stack above unless the driver awaits for it
            waiting = list(local.get("waiting") or ())
            if running is not None and not running.gi_running:
                waiting.append(running)
            for gen in reversed(waiting):
                gframe = gen.gi_frame
                if gframe is None:
                    continue
                gcode = gframe.f_code
                library = skipped.get(gcode)
                if not (_is_library(gcode) if library is None else library):
                    return (gcode.co_filename, gframe.f_lineno, gcode.co_name)
        elif not library:
            return (code.co_filename, frame.f_lineno, code.co_name)
        frame = frame.f_back
    return None
