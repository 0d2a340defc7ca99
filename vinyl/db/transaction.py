"""Transactions in both modes: ``atomic()``, ``on_commit()``, ``get_rollback()``/``set_rollback()``.

Sync mode delegates to Django's own transaction machinery on Django's connection, so
``django.db.transaction.atomic`` and ``vinyl.atomic`` nest inside each other and share one
transaction. Async mode has no Django counterpart: the outermost block checks a connection out of
the pool and *pins* it to the current task (a contextvar, per alias) until the block ends; nested
blocks are savepoints, with Django's rules for rollback and ``on_commit`` callbacks.

These two halves cannot be one implementation: the sync half must *be* Django's ``Atomic`` to
interoperate with it, and Django's ``Atomic`` only speaks to a sync connection. They sit side by
side in :class:`Atomic`.

Child tasks. Tasks started inside an async ``atomic()`` block (``gather``, task groups,
``create_task``) inherit it: their queries run on the block's connection, one operation at a time
(a lock serialises them, so a query never interleaves with another's statement sequence). Only the
task that opened the outermost block may open savepoints; ``atomic()`` with a savepoint in a child
gets ``TransactionManagementError``, ``atomic(savepoint=False)`` is allowed (it only marks the
transaction for rollback if it fails). A child still running after the block ended gets
``TransactionManagementError`` for its next query instead of silently running outside the
transaction.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import itertools
import logging
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from asgiref.sync import async_to_sync
from django.db import DEFAULT_DB_ALIAS, DatabaseError, transaction
from django.db.models.query import QuerySet
from django.db.transaction import TransactionManagementError

from ..compat import mirrors
from ..flags import is_async
from ..futures import ready
from ..futures.shields import guard, shielded
from .pins import current_pin, in_test_run, pin_task, test_block, unpin_task
from .pool import begin_statement, getconn
from .querylog import observed
from .wrapper import sql_connection

if TYPE_CHECKING:
    from types import TracebackType
    from typing import Self

__all__ = [
    "Atomic",
    "atomic",
    "current_pin",
    "get_rollback",
    "in_atomic",
    "mark_for_rollback_on_error",
    "on_commit",
    "set_rollback",
]

logger = logging.getLogger("vinyl.transaction")

# Names of the savepoints that stand for outermost blocks in a test's transaction.
_test_savepoints = itertools.count(1)
# The outer_savepoint of an outermost atomic(savepoint=False) block in a test's transaction.
_NO_SAVEPOINT = ""

# The frame of a savepoint=False block in a child task (see Atomic.__aenter__).
_CHILD: Any = object()


class Pin:
    """One async transaction: its connection, savepoints, on_commit callbacks and lock.

    In a test run, a Pin may stand for the test's own transaction on Django's connection
    (``session``: that DatabaseWrapper); an outermost ``atomic()`` block on it is a savepoint
    (``outer_savepoint``) sharing its lock.
    """

    observed_by_django = False  # its statements are logged by vinyl.db.querylog

    #: Django's DatabaseWrapper whose test transaction this pin runs in (vinyl.db.testdb).
    session: Any = None
    #: The test's own atomic block on that wrapper, while this pin may be used.
    test_block: Any = None
    #: The savepoint that stands for BEGIN/COMMIT of a block opened on a test's transaction.
    outer_savepoint: str | None = None

    @property
    def owner(self) -> asyncio.Task[Any] | None:
        """The task that opened the transaction (only it may open savepoints)."""
        return None if self._owner is None else self._owner()

    def is_test_transaction(self) -> bool:
        """Whether this pin is a test's own transaction (not a block of vinyl's in it)."""
        return self.session is not None and self.outer_savepoint is None

    def test_transaction_ended(self) -> bool:
        """Whether the test transaction this pin runs in has ended (the test is over)."""
        if self.session.connection is not self.conn.sync_conn:
            return True
        return test_block(self.session) is not self.test_block

    def __init__(self, alias: str, conn: Any, pool: Any, lock: asyncio.Lock | None = None) -> None:
        self.alias = alias
        self.conn = conn
        self.pool = pool
        # Weakly: a test's transaction pin stays in its task's context for the rest of the
        # task, and task → context → pin → task would be a reference cycle per test.
        owner = asyncio.current_task()
        self._owner = None if owner is None else weakref.ref(owner)
        self.loop = asyncio.get_running_loop()
        self.savepoint_ids: list[str | None] = []
        self.run_on_commit: list[tuple[set[str], Callable[[], Any], bool]] = []
        self.needs_rollback = False
        self.rollback_exc: BaseException | None = None
        self.closed = False
        self._lock = lock if lock is not None else asyncio.Lock()
        self._holder: asyncio.Task[Any] | None = None
        self._depth = 0
        self._next_sid = 0

    # Serialising the operations of the tasks that share this transaction. *task* is whom the
    # caller acts for: the block's shielded clean-up acts for the block's task.
    async def enter(self, check: bool = True, task: Any = None) -> None:
        self._check(check)
        if task is None:
            task = asyncio.current_task()
        if self._holder is task:
            self._depth += 1
            return
        await self._lock.acquire()
        try:
            self._check(check)  # the block may have ended, or failed, while this task waited
        except BaseException:
            self._lock.release()
            raise
        self._holder, self._depth = task, 1

    def check_open(self) -> None:
        """Raise TransactionManagementError if the block has ended (a child task outlived it)
        or belongs to another event loop (a context copied into another thread's loop)."""
        if self.closed:
            raise TransactionManagementError(
                f"This task inherited an atomic() block on database {self.alias!r} that has "
                "already ended; await child tasks before the block exits."
            )
        if asyncio._get_running_loop() is not self.loop:
            # Its connection and lock belong to that loop: using them here would race it.
            raise TransactionManagementError(
                f"This code inherited an atomic() block on database {self.alias!r} that runs in "
                "another event loop (the context was copied into another thread, e.g. by "
                "asyncio.to_thread, and a new loop started there). Run the work in the block's "
                "own loop, or in a fresh contextvars.Context() for a transaction of its own."
            )

    def _check(self, check: bool) -> None:
        self.check_open()
        if not check:
            return
        holder: Any = self
        if self.is_test_transaction():
            holder = self.session  # Django's flag, which the test's atomic() blocks clear
        if holder.needs_rollback:
            raise TransactionManagementError(
                "An error occurred in the current transaction. You can't execute queries until "
                "the end of the 'atomic' block."
            ) from holder.rollback_exc

    def check_usable(self) -> None:
        """Raise if the block has ended or a failed statement awaits its rollback."""
        self._check(True)

    def leave(self) -> None:
        if self._depth <= 0:
            return  # released by close(): an operation that outlived its block
        self._depth -= 1
        if self._depth == 0:
            self._holder = None
            self._lock.release()

    def close(self) -> None:
        """End the transaction for every task that shares it (the caller holds the lock)."""
        self.closed = True
        if self._depth > 0:
            self._holder, self._depth = None, 0
            self._lock.release()

    def failed(self) -> None:
        # A statement was cut off by cancellation: the block must not commit work in doubt.
        self.needs_rollback = True

    async def execute(self, sql: str, task: Any = None) -> None:
        """Run a transaction-control statement (BEGIN, SAVEPOINT, COMMIT …).

        With *task*, the caller is the block's clean-up, which runs shielded (nothing cancels
        it), so the statement needs no guard against cancellation.
        """
        await self.enter(check=False, task=task)
        try:
            await observed(_execute_control, self, sql, None, task)
        except asyncio.CancelledError:
            self.failed()
            raise
        finally:
            self.leave()

    def new_savepoint_id(self) -> str:
        self._next_sid += 1
        return f"vinyl_s{self._next_sid}"


async def _execute_control(pin: Pin, sql: str, params: None, task: Any) -> None:
    with sql_connection(pin.alias).wrap_database_errors:
        statement = pin.conn.execute(sql)
        await (statement if task is not None else guard(statement))


@mirrors("django.db.backends.base.base:BaseDatabaseWrapper.run_and_clear_commit_hooks")
async def _run_callbacks(callbacks: list[tuple[set[str], Callable[[], Any], bool]]) -> None:
    for _, func, robust in callbacks:
        try:
            result = func()
            if inspect.isawaitable(result):
                await result
        except Exception:
            if not robust:
                raise
            _log_callback_error(func)


def _run_sync_callback(func: Callable[[], Any], robust: bool) -> None:
    try:
        func()
    except Exception:
        if not robust:
            raise
        _log_callback_error(func)


def _log_callback_error(func: Callable[[], Any]) -> None:
    name = getattr(func, "__qualname__", func)
    logger.exception("Error calling %s in on_commit().", name)


class Atomic:
    """A transaction or savepoint, as Django's ``transaction.atomic`` (see :func:`atomic`)."""

    def __init__(self, using: str | None, savepoint: bool, durable: bool) -> None:
        self.using = using
        self.savepoint = savepoint
        self.durable = durable
        self._django: transaction.Atomic | None = None
        # Async frames per task: one Atomic object may be entered by several tasks at once.
        self._frames: dict[Any, list[tuple[Pin, contextvars.Token[Any] | None]]] = {}

    @property
    def alias(self) -> str:
        return self.using or DEFAULT_DB_ALIAS

    # -- sync mode: Django's Atomic --------------------------------------------------------
    def __enter__(self) -> Self:
        if is_async():
            raise TypeError(
                "vinyl.atomic() is in async mode here: use `async with atomic():`, or enter it "
                "under vinyl.sync_mode() from a thread without a running event loop."
            )
        if self._django is None:
            self._django = transaction.Atomic(self.using, self.savepoint, self.durable)
        self._django.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._django is not None
        self._django.__exit__(exc_type, exc, tb)

    # -- async mode: a pinned pooled connection --------------------------------------------
    @mirrors("django.db.transaction:Atomic.__enter__")
    async def __aenter__(self) -> Self:
        if not is_async():
            raise TypeError("vinyl.atomic() is in sync mode here: use `with atomic():`.")
        alias = self.alias
        task = asyncio.current_task()
        if in_test_run():
            # Late: testdb builds on Pin (tests only).
            from .testdb import prepare_in_tests

            await prepare_in_tests(alias)
        pin = current_pin(alias)
        if pin is None or pin.is_test_transaction():
            if pin is None:
                statement = begin_statement(alias)
                conn, pool = await getconn(alias)
                pin = Pin(alias, conn, pool)
            else:  # the test's transaction: this block is a savepoint in it
                session = pin
                pin = Pin(alias, session.conn, None, lock=session._lock)
                pin.session, pin.test_block = session.session, session.test_block
                if self.savepoint:
                    pin.outer_savepoint = f"vinyl_t{next(_test_savepoints)}"
                    statement = f'SAVEPOINT "{pin.outer_savepoint}"'
                else:
                    # As Django's atomic(savepoint=False) nested in the test's block: no
                    # statement; a failure marks the test's transaction for rollback.
                    pin.outer_savepoint, statement = _NO_SAVEPOINT, None
            try:
                if statement is not None:
                    await pin.execute(statement)
            except BaseException:
                pin.close()
                if pin.pool is not None:
                    await shielded(pin.pool.putconn(pin.conn))
                raise
            token = pin_task(alias, pin)
            self._frames.setdefault(task, []).append((pin, token))
            return self
        pin.check_open()
        if self.durable:
            raise RuntimeError(
                "A durable atomic block cannot be nested within another atomic block."
            )
        if pin.owner is not task:
            if self.savepoint:
                raise TransactionManagementError(
                    "atomic() was entered in a child task of the task that opened the "
                    f"transaction on database {alias!r}. Only that task may open savepoints; "
                    "use atomic(savepoint=False) here, run the work in the parent task, or run "
                    "it in a transaction of its own (a task started with a fresh "
                    "contextvars.Context())."
                )
            # No savepoint, so nothing to order among concurrent tasks: the block only marks
            # the transaction for rollback if it fails.
            self._frames.setdefault(task, []).append((pin, _CHILD))
            return self
        sid = None
        if self.savepoint and not pin.needs_rollback:
            sid = pin.new_savepoint_id()
            await pin.execute(f'SAVEPOINT "{sid}"')
        pin.savepoint_ids.append(sid)
        self._frames.setdefault(task, []).append((pin, None))
        return self

    @mirrors("django.db.transaction:Atomic.__exit__")
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task = asyncio.current_task()
        frames = self._frames[task]
        pin, token = frames.pop()
        if not frames:
            del self._frames[task]
        if token is _CHILD:
            if exc_type is not None:
                pin.needs_rollback = True
            return
        # Shielded: cancellation must not stop the rollback that cleans up after it.
        if token is None:
            await shielded(self._exit_savepoint(pin, exc_type is None, task))
            return
        try:
            committed = await shielded(self._exit_outermost(pin, exc_type is None, task))
        finally:
            unpin_task(token)
        if committed and pin.run_on_commit:
            callbacks, pin.run_on_commit = pin.run_on_commit, []
            if pin.session is not None:  # they wait for the test's transaction, as in Django
                for _, func, robust in callbacks:
                    _django_on_commit(pin.session, func, robust)
                return
            await _run_callbacks(callbacks)

    @mirrors("django.db.transaction:Atomic.__exit__")
    async def _exit_savepoint(self, pin: Pin, success: bool, task: Any) -> None:
        sid = pin.savepoint_ids.pop()
        if success and not pin.needs_rollback:
            if sid is not None:
                try:
                    await pin.execute(f'RELEASE SAVEPOINT "{sid}"', task)
                except DatabaseError:
                    await self._rollback_savepoint(pin, sid, task)
                    raise
            return
        # This flag is set again if no savepoint lets this level roll back on its own.
        pin.needs_rollback = False
        if sid is None:
            pin.needs_rollback = True
        else:
            await self._rollback_savepoint(pin, sid, task)

    async def _rollback_savepoint(self, pin: Pin, sid: str, task: Any) -> None:
        try:
            await pin.execute(f'ROLLBACK TO SAVEPOINT "{sid}"', task)
            await pin.execute(f'RELEASE SAVEPOINT "{sid}"', task)
            pin.needs_rollback = False
        except DatabaseError:
            pin.needs_rollback = True
        pin.run_on_commit = [item for item in pin.run_on_commit if sid not in item[0]]

    @mirrors("django.db.transaction:Atomic.__exit__")
    async def _exit_outermost(self, pin: Pin, success: bool, task: Any) -> bool:
        """End the transaction; return whether it committed."""
        try:
            await pin.enter(check=False, task=task)  # waits for child tasks' running operations
            if success and not pin.needs_rollback:
                sid = pin.outer_savepoint
                if sid == _NO_SAVEPOINT:
                    return True
                try:
                    await pin.execute(
                        "COMMIT" if sid is None else f'RELEASE SAVEPOINT "{sid}"', task
                    )
                except BaseException:
                    await self._quiet_rollback(pin, task)
                    raise
                return True
            await self._quiet_rollback(pin, task)
            return False
        finally:
            pin.close()
            if pin.pool is not None:
                await pin.pool.putconn(pin.conn)

    @staticmethod
    async def _quiet_rollback(pin: Pin, task: Any) -> None:
        sid = pin.outer_savepoint
        if sid == _NO_SAVEPOINT:
            pin.session.needs_rollback = True  # Django's Atomic.__exit__ without a savepoint
            return
        try:
            if sid is None:
                await pin.execute("ROLLBACK", task)
            else:
                await pin.execute(f'ROLLBACK TO SAVEPOINT "{sid}"', task)
                await pin.execute(f'RELEASE SAVEPOINT "{sid}"', task)
        except DatabaseError:
            pass  # a broken connection: the pool discards it

    # -- decorator -------------------------------------------------------------------------
    def __call__(self, func: Callable[..., Any]) -> Callable[..., Any]:
        using, savepoint, durable = self.using, self.savepoint, self.durable
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_inner(*args: Any, **kwargs: Any) -> Any:
                async with Atomic(using, savepoint, durable):
                    return await func(*args, **kwargs)

            return async_inner

        @functools.wraps(func)
        def inner(*args: Any, **kwargs: Any) -> Any:
            return _call_in(Atomic(using, savepoint, durable), func, args, kwargs)

        return inner


def _call_in(block: Atomic, func: Callable[..., Any], args: Any, kwargs: Any) -> Any:
    """Return ``func(*args, **kwargs)`` called inside *block*, in the current mode (maybe-async)."""
    if is_async():
        return _call_in_block(block, func, args, kwargs)
    with block:
        return func(*args, **kwargs)


async def _call_in_block(block: Atomic, func: Callable[..., Any], args: Any, kwargs: Any) -> Any:
    async with block:
        result = func(*args, **kwargs)  # called inside: its queries run on the pinned connection
        # A returned queryset stays lazy, as in sync mode; operations are awaited in the block
        # (an operation that returns a queryset is evaluated by the driver, in both modes).
        while inspect.isawaitable(result) and not isinstance(result, QuerySet):
            result = await result
        return result


def in_atomic(using: str, op: Any, *args: Any, savepoint: bool = False, **kwargs: Any) -> Any:
    """Return ``op(*args, **kwargs)`` run inside ``atomic(using, savepoint)`` (maybe-async).

    Sync mode: Django's ``transaction.atomic`` (through vinyl.atomic), as Django's own multi-
    statement writes. Async mode: vinyl's async block on the task's pinned connection.
    """
    return _call_in(Atomic(using, savepoint, False), op, args, kwargs)


def atomic(using: Any = None, savepoint: bool = True, durable: bool = False) -> Any:
    """Open a transaction (or a savepoint when nested), as Django's ``transaction.atomic``.

    Use ``with atomic():`` in sync mode, ``async with atomic():`` in async mode, or decorate a
    function (``@atomic`` or ``@atomic(using=...)``). A decorated ``async def`` runs in an async
    block. Any other decorated function follows the mode when called: sync mode runs it in a
    ``with`` block; async mode returns an awaitable that runs it in an ``async with`` block and
    awaits its result if that is awaitable, so ``@atomic`` on a ``@maybe_async`` operation is
    universal. In async mode the block pins one pooled connection to the current task.
    """
    if callable(using):  # bare @atomic
        return Atomic(DEFAULT_DB_ALIAS, savepoint, durable)(using)
    return Atomic(using, savepoint, durable)


@mirrors("django.db.backends.base.base:BaseDatabaseWrapper.on_commit")
def on_commit(func: Callable[[], Any], using: str | None = None, robust: bool = False) -> Any:
    """Run *func* after the current transaction commits (at once outside a transaction).

    As Django's ``transaction.on_commit``, in both modes: inside an atomic block the callback is
    queued (a rolled-back savepoint drops the callbacks registered inside it); outside one, a
    sync *func* runs at once, before on_commit() returns. *func* may also be async: sync mode
    runs it through ``async_to_sync``; async mode outside a transaction returns the awaitable
    that runs it (await it). The value returned otherwise needs no await (awaiting it is
    harmless, so universal code may ``yield on_commit(...)``).
    """
    if not callable(func):
        raise TypeError("on_commit()'s callback must be a callable.")
    alias = using or DEFAULT_DB_ALIAS
    if not is_async():
        callback = async_to_sync(func) if inspect.iscoroutinefunction(func) else func
        return transaction.on_commit(callback, alias, robust)
    pin = current_pin(alias)
    if pin is None:
        if inspect.iscoroutinefunction(func):
            return _run_callbacks([(set(), func, robust)])
        _run_sync_callback(func, robust)
        return ready(None)
    pin.check_open()
    if pin.outer_savepoint is None and pin.session is not None:  # the test's own transaction
        _django_on_commit(pin.session, func, robust)
        return ready(None)
    pin.run_on_commit.append((set(filter(None, pin.savepoint_ids)), func, robust))
    return ready(None)


def _django_on_commit(wrapper: Any, func: Callable[[], Any], robust: bool) -> None:
    """Queue *func* on Django's connection (a test's transaction; see vinyl.testdb)."""
    callback = async_to_sync(func) if inspect.iscoroutinefunction(func) else func
    wrapper.on_commit(callback, robust)


def get_rollback(using: str | None = None) -> bool:
    """Return whether the innermost atomic block is marked for rollback (Django's semantics)."""
    alias = using or DEFAULT_DB_ALIAS
    if not is_async():
        return transaction.get_rollback(alias)
    pin = _require_pin(alias, "get_rollback")
    return pin.needs_rollback


def set_rollback(rollback: bool, using: str | None = None) -> None:
    """Mark (or unmark) the innermost atomic block for rollback when it exits."""
    alias = using or DEFAULT_DB_ALIAS
    if not is_async():
        transaction.set_rollback(rollback, alias)
        return
    _require_pin(alias, "set_rollback").needs_rollback = rollback


@mirrors("django.db.transaction:mark_for_rollback_on_error")
@contextmanager
def mark_for_rollback_on_error(using: str | None = None) -> Iterator[None]:
    """Mark the current transaction for rollback if the block raises, as Django's (both modes).

    What Django's ``Model.save()`` and friends do around a single query: outside a transaction
    nothing happens; inside one, an exception makes further queries fail until the innermost
    savepoint rolls back. A plain ``with`` in either mode (no I/O).
    """
    if not is_async():
        with transaction.mark_for_rollback_on_error(using):
            yield
        return
    try:
        yield
    except Exception as exc:
        pin = current_pin(using or DEFAULT_DB_ALIAS)
        if pin is not None:
            if pin.is_test_transaction():
                # The test's transaction is Django's: mark it as Django does, so that a
                # transaction.atomic() block of the test around this query rolls back and
                # clears the mark, as in Django.
                if pin.session.in_atomic_block:
                    pin.session.needs_rollback = True
                    pin.session.rollback_exc = exc
            else:
                pin.needs_rollback = True
                pin.rollback_exc = exc
        raise


def _require_pin(alias: str, name: str) -> Pin:
    pin = current_pin(alias)
    if pin is None:
        raise TransactionManagementError(
            f"The rollback flag doesn't work outside of an 'atomic' block ({name})."
        )
    pin.check_open()
    return pin
