"""vinyl through PgBouncer in transaction pooling mode (5 server connections), both modes.

Every client transaction may run on another server connection, and a server connection serves
many clients in turn: nothing of one client's session may reach the next client.
"""

from __future__ import annotations

import threading
import time
from decimal import Decimal

import pytest
from django.db import OperationalError, ProgrammingError, connections
from django.db.models import Count, Sum
from django.utils import timezone

from tests.helpers import temporary_alias
from tests.testapp.models import Author, Book
from tests.topology.conftest import BOUNCER, PRIMARY
from tests.topology.probes import ServerWatch, assert_servers_clean, probe_all
from tests.topology.servers import DBNAME
from vinyl import atomic, gather, is_async, maybe_async
from vinyl.connection import NO_RESULTS, SINGLE, run
from vinyl.testing import both_modes


@both_modes
def test_plain_queries(bouncer):
    ann = yield Author.vinyl.using(BOUNCER).create(name="Ann")
    yield Book.vinyl.using(BOUNCER).bulk_create(
        [Book(author=ann, title=f"B{i}", pages=i, price=Decimal(i)) for i in range(10)]
    )
    assert (yield Book.vinyl.using(BOUNCER).count()) == 10
    book = yield Book.vinyl.using(BOUNCER).select_related("author").get(title="B3")
    assert (book.pages, book.author.name) == (3, "Ann")
    totals = yield Author.vinyl.using(BOUNCER).annotate(n=Count("books")).values_list("name", "n")
    assert list(totals) == [("Ann", 10)]
    assert (yield Book.vinyl.using(BOUNCER).aggregate(s=Sum("pages"))) == {"s": 45}
    assert (yield Book.vinyl.using(BOUNCER).filter(pages__lt=5).update(pages=0)) == 5
    deleted, _ = yield Book.vinyl.using(BOUNCER).filter(pages=0).delete()
    assert deleted == 5


@both_modes
def test_time_zone_set_by_vinyl_reaches_every_server_connection(bouncer):
    """vinyl (like Django) sets the session time zone once per client connection, outside a
    transaction; PgBouncer tracks TimeZone and sets it on whichever server connection serves the
    client, so datetimes read through it equal those read on the primary directly."""
    moment = timezone.now().replace(microsecond=0)
    ann = yield Author.vinyl.using(BOUNCER).create(name="Ann")
    yield Book.vinyl.using(BOUNCER).create(author=ann, title="T", published=moment)
    # Concurrent statements (async mode: five at once) on the server connections.
    rows = yield gather(*(run(BOUNCER, "SELECT current_setting('TimeZone'), pg_sleep(0.1)",
                              None, SINGLE) for _ in range(5)))  # fmt: skip
    assert {zone for zone, _ in rows} == {"UTC"}
    via_bouncer = yield Book.vinyl.using(BOUNCER).values_list("published", flat=True).get()
    direct = yield Book.vinyl.using(PRIMARY).values_list("published", flat=True).get()
    assert via_bouncer == direct == moment
    assert via_bouncer.utcoffset() == direct.utcoffset()


class Boom(Exception):
    pass


@atomic(using=BOUNCER)
@maybe_async
def _failing_savepoint(ann):
    yield Book.vinyl.using(BOUNCER).create(author=ann, title="rolled back")
    raise Boom


@atomic(using=BOUNCER)
@maybe_async
def _kept_savepoint(ann):
    yield Book.vinyl.using(BOUNCER).create(author=ann, title="kept")


@atomic(using=BOUNCER)
@maybe_async
def _transaction(ann_pk):
    ann = yield Author.vinyl.using(BOUNCER).select_for_update().get(pk=ann_pk)
    yield run(BOUNCER, "SELECT set_config('vinyl.leftover', 'yes', true)", None, NO_RESULTS)
    yield Book.vinyl.using(BOUNCER).create(author=ann, title="outer")
    try:
        yield _failing_savepoint(ann)
    except Boom:
        pass
    yield _kept_savepoint(ann)
    # The row lock is held by this transaction's server connection until COMMIT.
    return (yield run(BOUNCER, "SELECT count(*) FROM pg_locks WHERE locktype = 'transactionid' "
                      "AND pid = pg_backend_pid()", None, SINGLE))  # fmt: skip


@both_modes
def test_atomic_with_savepoints_and_select_for_update(bouncer):
    ann = yield Author.vinyl.using(BOUNCER).create(name="Ann")
    (locks,) = yield _transaction(ann.pk)
    assert locks >= 1
    titles = yield Book.vinyl.using(PRIMARY).order_by("title").values_list("title", flat=True)
    assert list(titles) == ["kept", "outer"]
    assert_servers_clean(bouncer)


@both_modes
def test_bulk_writes(bouncer):
    ann = yield Author.vinyl.using(BOUNCER).create(name="Ann")
    books = yield Book.vinyl.using(BOUNCER).bulk_create(
        [Book(author=ann, title=f"B{i}", pages=i) for i in range(2000)], batch_size=500
    )
    assert all(b.pk for b in books)
    for b in books:
        b.pages += 1
    assert (yield Book.vinyl.using(BOUNCER).bulk_update(books, ["pages"], batch_size=400)) == 2000
    total = yield Book.vinyl.using(PRIMARY).aggregate(s=Sum("pages"))
    assert total == {"s": sum(range(1, 2001))}


@pytest.fixture
def server_binding(bouncer):
    settings = connections[BOUNCER].settings_dict
    options = {"server_side_binding": True}
    with temporary_alias("topo_bouncer_ssb", **{k: settings[k] for k in
                         ("HOST", "PORT", "NAME", "USER", "PASSWORD")}, OPTIONS=options,
                         VINYL={"max_size": 10}) as alias:  # fmt: skip
        yield alias


@pytest.fixture
def serializable(bouncer):
    from psycopg import IsolationLevel

    settings = connections[BOUNCER].settings_dict
    options = {"isolation_level": IsolationLevel.SERIALIZABLE}
    with temporary_alias("topo_bouncer_serializable", **{k: settings[k] for k in
                         ("HOST", "PORT", "NAME", "USER", "PASSWORD")}, OPTIONS=options,
                         VINYL={"max_size": 5}) as alias:  # fmt: skip
        yield alias


@both_modes
def test_isolation_level_is_set_per_transaction(bouncer, serializable):
    """OPTIONS["isolation_level"] goes into each BEGIN (Django's through psycopg, vinyl's own),
    never into the session, so it survives PgBouncer and reaches no other client."""

    @atomic(using=serializable)
    @maybe_async
    def level():
        row = yield run(serializable, "SELECT current_setting('transaction_isolation')", None,
                        SINGLE)  # fmt: skip
        return row[0]

    levels = yield gather(*(level() for _ in range(5)))
    assert set(levels) == {"serializable"}
    others = probe_all(bouncer, 0.2, "SELECT current_setting('transaction_isolation'), "
                       "pg_backend_pid(), pg_sleep(%s)")  # fmt: skip
    assert len({pid for _, pid, _ in others}) == 5
    assert {level for level, _, _ in others} == {"read committed"}


@both_modes
def test_server_side_binding_prepares_nothing(bouncer, server_binding):
    """With server-side binding, psycopg would prepare a statement run 5 times (its default
    prepare_threshold) on a server session that PgBouncer 1.18 does not keep; Django turns that
    off for its connections (prepare_threshold=None unless OPTIONS say otherwise) and vinyl's
    pools take Django's connection parameters."""
    ann = yield Author.vinyl.using(server_binding).create(name="Ann")
    for _ in range(3):
        counts = yield gather(*(Book.vinyl.using(server_binding).filter(author=ann).count()
                                for _ in range(10)))  # fmt: skip
        assert counts == [0] * 10
    assert_servers_clean(bouncer)


def test_vinyl_keeps_no_session_state():
    """What transaction pooling breaks, vinyl does not use: no LISTEN, advisory locks or
    prepared statements of its own; its only session-level statements are SET TIME ZONE (which
    PgBouncer tracks) and SET ROLE for OPTIONS["assume_role"] (documented in the guide)."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "vinyl"
    source = "\n".join(p.read_text() for p in root.glob("**/*.py"))
    for pattern in (r"\bLISTEN\b", r"pg_advisory", r"\bPREPARE\b", r"prepare_threshold"):
        assert not re.search(pattern, source), pattern
    sets = re.findall(r"\"SET (\w+)", source) + re.findall(r"set_time_zone_sql", source)
    assert sorted(set(sets)) == ["ROLE", "set_time_zone_sql"], sets


# -- iterator() ---------------------------------------------------------------------------------


@atomic(using=BOUNCER)
@maybe_async
def _stream_in_transaction():
    titles = []
    stream = Book.vinyl.using(BOUNCER).order_by("pages").iterator(chunk_size=7)
    if is_async():

        async def consume():
            async for book in stream:
                titles.append(book.title)

        yield consume()
    else:
        titles.extend(book.title for book in stream)
    return titles


@both_modes
def test_iterator_streams_inside_a_transaction(bouncer):
    """A server-side cursor lives in its transaction, which PgBouncer keeps on one server
    connection: streaming works in both modes."""
    ann = yield Author.vinyl.using(BOUNCER).create(name="Ann")
    yield Book.vinyl.using(BOUNCER).bulk_create(
        [Book(author=ann, title=f"B{i:02}", pages=i) for i in range(50)]
    )
    titles = yield _stream_in_transaction()
    assert titles == [f"B{i:02}" for i in range(50)]
    assert_servers_clean(bouncer)


def test_sync_iterator_outside_a_transaction(bouncer):
    """Outside a transaction, sync mode's server-side cursor is declared WITH HOLD (as Django's
    iterator() does) and fetched from by later statements, which PgBouncer may run on another
    server connection."""
    ann = Author.vinyl.using(BOUNCER).create(name="Ann")
    Book.vinyl.using(BOUNCER).bulk_create([Book(author=ann, title=f"B{i}") for i in range(10)])
    import psycopg

    stream = Book.vinyl.using(BOUNCER).order_by("pk").iterator(chunk_size=2)
    assert next(stream).title == "B0"
    # Another client takes the server connection the cursor was declared on (PgBouncer lends
    # the most recently used idle one), so the next FETCH runs in another server session.
    with psycopg.connect(host="127.0.0.1", port=bouncer.port, user="postgres",
                         dbname="vinyl_topology") as other:  # fmt: skip
        other.execute("SELECT 1")  # a transaction stays open: the server connection is its own
        with pytest.raises(ProgrammingError, match="DISABLE_SERVER_SIDE_CURSORS") as caught:
            list(stream)
    assert "iterate inside atomic()" in str(caught.value)
    # And the cursor, held, stays in the first server session (until PgBouncer closes it)
    # for whoever gets that server connection next: what DISABLE_SERVER_SIDE_CURSORS avoids.
    assert sorted(state for _, _, state, *_ in probe_all(bouncer)) == [0, 0, 0, 0, 1]
    bouncer.admin(f"RECONNECT {DBNAME}")
    assert_servers_clean(bouncer)


@pytest.fixture
def no_server_cursors(bouncer):
    settings = connections[BOUNCER].settings_dict
    settings["DISABLE_SERVER_SIDE_CURSORS"] = True
    try:
        yield
    finally:
        settings["DISABLE_SERVER_SIDE_CURSORS"] = False


@both_modes
def test_iterator_outside_a_transaction(bouncer, vinyl_mode, request):
    """Async mode streams in a transaction of its own, which PgBouncer keeps on one server
    connection; sync mode needs DISABLE_SERVER_SIDE_CURSORS (Django's setting for PgBouncer)."""
    if vinyl_mode == "sync":
        request.getfixturevalue("no_server_cursors")
    ann = yield Author.vinyl.using(BOUNCER).create(name="Ann")
    yield Book.vinyl.using(BOUNCER).bulk_create(
        [Book(author=ann, title=f"B{i:02}") for i in range(30)]
    )
    stream = Book.vinyl.using(BOUNCER).order_by("pk").iterator(chunk_size=4)
    if is_async():

        async def consume():
            return [book.title async for book in stream]

        titles = yield consume()
    else:
        titles = [book.title for book in stream]
    assert titles == [f"B{i:02}" for i in range(30)]
    assert_servers_clean(bouncer)


@atomic(using=BOUNCER)
@maybe_async
def _timed_out_transaction(ann):
    yield run(BOUNCER, "SELECT set_config('vinyl.leftover', 'yes', true)", None, NO_RESULTS)
    yield Book.vinyl.using(BOUNCER).create(author=ann, title="in doubt")
    yield run(BOUNCER, "SET LOCAL statement_timeout = 200", None, NO_RESULTS)
    yield run(BOUNCER, "SELECT pg_sleep(30)", None, NO_RESULTS)


@both_modes
def test_statement_cancelled_by_the_server_mid_transaction(bouncer):
    """Both modes: a statement the server cancels (statement_timeout) fails the transaction with
    Django's OperationalError; it rolls back and the server connection goes back clean (async
    mode's task cancellation: test_pgbouncer_async.py)."""
    ann = yield Author.vinyl.using(BOUNCER).create(name="Ann")
    started = time.monotonic()
    with pytest.raises(OperationalError, match="statement timeout"):
        yield _timed_out_transaction(ann)
    assert time.monotonic() - started < 5
    assert (yield Book.vinyl.using(PRIMARY).count()) == 0
    assert_servers_clean(bouncer)


def test_sync_threads_through_5_server_connections(bouncer):
    """Sync mode: 50 threads, each with Django's own connection (50 clients of PgBouncer), run
    reads and select_for_update transactions on 5 server connections."""

    ann = Author.vinyl.using(BOUNCER).create(name="Ann")
    stock = Book.vinyl.using(BOUNCER).create(author=ann, title="stock", pages=1000)
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            for _ in range(4):
                assert Author.vinyl.using(BOUNCER).get(pk=ann.pk).name == "Ann"
                with atomic(using=BOUNCER):
                    book = Book.vinyl.using(BOUNCER).select_for_update().get(pk=stock.pk)
                    book.update(pages=book.pages - 1)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    with ServerWatch(bouncer) as watch:
        started = time.perf_counter()
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
    assert not errors, errors[:3]
    assert Book.vinyl.using(PRIMARY).get(pk=stock.pk).pages == 1000 - 200
    assert 1 <= watch.max_servers <= bouncer.pool_size
    print(f"\n50 threads x 8 operations through PgBouncer: {elapsed:.2f} s, at most "
          f"{watch.max_servers} server connections, {watch.max_waiting} waiting clients")  # fmt: skip
    assert_servers_clean(bouncer)
