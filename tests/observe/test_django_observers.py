"""Django's own ways of seeing SQL see vinyl's statements, the same in both modes.

Sync mode runs on Django's cursor (CursorDebugWrapper when DEBUG), async mode on vinyl's pool;
each test asserts what Django itself gives in sync mode, so the async run checks vinyl's copy of it.
"""

import logging
import re
from collections import deque

import pytest
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_started
from django.db import DatabaseError, connection, connections, reset_queries
from django.test.utils import override_settings

import vinyl
from tests.testapp.models import Author, Book
from vinyl import atomic, maybe_async
from vinyl.testing import both_modes

COUNT_ANN = (
    'SELECT COUNT(*) AS "__count" FROM "testapp_author" WHERE "testapp_author"."name" = \'Ann\''
)


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture
def sql_log():
    handler = Records()
    log = logging.getLogger("django.db.backends")
    old_level = log.level
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    yield handler.records
    log.removeHandler(handler)
    log.setLevel(old_level)


@pytest.fixture
def ann(db):
    return Author.objects.create(name="Ann")


# -- 1. the django.db.backends DEBUG record --------------------------------------------------


@both_modes
def test_each_statement_logs_djangos_record(ann, sql_log):
    with override_settings(DEBUG=True):
        assert (yield Author.vinyl.filter(name="Ann").count()) == 1
        yield Book.vinyl.create(author=ann, title="T")
    count, insert = sql_log
    assert count.name == "django.db.backends" and count.levelno == logging.DEBUG
    assert count.msg == "(%.3f) %s; args=%s; alias=%s"
    assert count.sql == COUNT_ANN  # with the parameters bound, as Django's last_executed_query
    assert count.params == ("Ann",)
    assert count.alias == "default"
    assert isinstance(count.duration, float) and 0 < count.duration < 5
    assert count.getMessage() == f"({count.duration:.3f}) {COUNT_ANN}; args=('Ann',); alias=default"
    assert insert.sql.startswith('INSERT INTO "testapp_book"') and "'T'" in insert.sql
    assert {"duration", "sql", "params", "alias"} <= set(vars(insert))


@both_modes
def test_nothing_is_logged_without_debug(ann, sql_log):
    # Django logs SQL only through its debug cursor (DEBUG or force_debug_cursor).
    with override_settings(DEBUG=False):
        yield Author.vinyl.count()
    assert sql_log == []


@both_modes
def test_transaction_statements_log_as_django_does(ann, sql_log, vinyl_mode):
    with override_settings(DEBUG=True):
        connection.queries_log.clear()
        yield in_block(ann)
        logged = [q["sql"] for q in connection.queries]
    assert [r.sql for r in sql_log] == logged
    savepoint = [r for r in sql_log if r.sql.startswith("SAVEPOINT")]
    assert len(savepoint) == 1 and savepoint[0].params is None  # via the cursor: with params
    commit = sql_log[-1]
    assert commit.sql == "COMMIT" and not hasattr(commit, "params")  # debug_transaction's record
    assert logged[0] == "BEGIN"
    assert len(logged) == 6, logged  # BEGIN, SELECT, SAVEPOINT, INSERT, RELEASE, COMMIT


@maybe_async
def in_block(ann):
    if vinyl.is_async():  # `with` and `async with` cannot be written once
        yield _async_block(ann)
    else:
        with atomic():
            yield Author.vinyl.filter(pk=ann.pk).count()
            with atomic():
                yield Book.vinyl.create(author=ann, title="T")


async def _async_block(ann):
    async with atomic():
        await Author.vinyl.filter(pk=ann.pk).count()
        async with atomic():
            await Book.vinyl.create(author=ann, title="T")


# -- 2. connection.queries under DEBUG -------------------------------------------------------


@both_modes
def test_debug_lists_statements_in_connection_queries(ann):
    with override_settings(DEBUG=True):
        reset_queries()
        yield Author.vinyl.filter(name="Ann").count()
        yield Author.vinyl.filter(name="Bob").exists()
        queries = connection.queries
        assert [q["sql"] for q in queries][0] == COUNT_ANN
        assert len(queries) == 2 and "'Bob'" in queries[1]["sql"]
        assert all(float(q["time"]) >= 0 and q["time"].count(".") == 1 for q in queries)
        reset_queries()
        assert connection.queries == []


@both_modes
def test_the_list_is_djangos_bounded_deque(ann):
    saved = connection.queries_log
    connection.queries_log = deque(maxlen=3)
    try:
        with override_settings(DEBUG=True):
            for _ in range(5):
                yield Author.vinyl.count()
        assert len(connection.queries_log) == 3
    finally:
        connection.queries_log = saved


@both_modes
def test_request_started_clears_the_list(ann, vinyl_mode):
    with override_settings(DEBUG=True):
        yield Author.vinyl.count()
        assert len(connection.queries) >= 1
        if vinyl_mode == "async":
            # ASGI: Django's reset_queries runs in a worker thread; vinyl clears the loop's list.
            yield request_started.asend(sender=ASGIHandler, scope={"type": "http"})
        else:
            request_started.send(sender=WSGIHandler, environ={})
        assert connection.queries == []


@both_modes
def test_force_debug_cursor_lists_without_debug(ann):
    connection.force_debug_cursor = True
    try:
        connection.queries_log.clear()
        yield Author.vinyl.count()
        assert len(connection.queries) == 1
    finally:
        connection.force_debug_cursor = False
        connection.queries_log.clear()


# -- 3. execute wrappers ---------------------------------------------------------------------


@both_modes
def test_djangos_execute_wrapper_sees_each_statement(ann):
    calls = []

    def wrapper(execute, sql, params, many, context):
        calls.append((sql, params, many, context["connection"]))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper):
        assert (yield Author.vinyl.filter(name="Ann").count()) == 1
        yield Book.vinyl.create(author=ann, title="T")
    assert len(calls) == 2
    sql, params, many, conn = calls[0]
    assert sql.startswith('SELECT COUNT(*) AS "__count"') and params == ("Ann",)
    assert many is False and conn is connections["default"]  # the thread's wrapper
    assert calls[1][0].startswith('INSERT INTO "testapp_book"')


@pytest.fixture
def two_bobs(db):
    Author.objects.bulk_create([Author(name="Bob"), Author(name="Bob")])


@both_modes
def test_a_wrapper_that_rewrites_rewrites_what_runs(ann, two_bobs):

    def ask_for_bob(execute, sql, params, many, context):
        return execute(
            sql + " /* rewritten */", ["Bob" if p == "Ann" else p for p in params], many, context
        )

    with override_settings(DEBUG=True):
        with connection.execute_wrapper(ask_for_bob):
            assert (yield Author.vinyl.filter(name="Ann").count()) == 2
        assert connection.queries[-1]["sql"].endswith("'Bob' /* rewritten */")


class Refused(Exception):
    pass


@both_modes
def test_a_wrapper_that_raises_stops_the_statement(ann):
    def no_writes(execute, sql, params, many, context):
        if sql.startswith("INSERT"):
            raise Refused(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(no_writes):
        with pytest.raises(Refused):
            yield Book.vinyl.create(author=ann, title="T")
        assert (yield Book.vinyl.count()) == 0


@both_modes
def test_vinyl_execute_wrapper_times_and_sees_results(ann, vinyl_mode):
    seen = []

    @maybe_async
    def timed(execute, sql, params, many, context):
        result = yield execute(sql, params, many, context)
        seen.append((sql, result, context["alias"]))
        return result

    with vinyl.execute_wrapper(timed):
        assert (yield Author.vinyl.filter(name="Ann").values_list("name", flat=True)) == ["Ann"]
    assert len(seen) == 1
    sql, rows, alias = seen[0]
    assert rows == [("Ann",)] and alias == "default"


@both_modes
def test_vinyl_execute_wrapper_can_rewrite_and_refuse(ann):
    def refuse(execute, sql, params, many, context):
        raise Refused(sql)

    with vinyl.execute_wrapper(refuse):
        with pytest.raises(Refused):
            yield Author.vinyl.count()
    assert (yield Author.vinyl.count()) == 1  # the wrapper belongs to its block only


@pytest.mark.anyio
async def test_async_def_execute_wrapper_in_async_mode(ann):
    durations = []

    async def timed(execute, sql, params, many, context):
        result = await execute(sql, params, many, context)
        durations.append(sql)
        return result

    with vinyl.execute_wrapper(timed):
        await Author.vinyl.count()
        async with atomic():
            await Author.vinyl.filter(name="Ann").exists()
    assert len(durations) == 2, durations  # not BEGIN and COMMIT: Django runs them in sync mode


@pytest.mark.anyio
async def test_a_django_wrapper_that_skips_execute_gets_an_error(ann):
    def skip(execute, sql, params, many, context):
        return None

    with connection.execute_wrapper(skip):
        with pytest.raises(RuntimeError, match="returned without calling execute"):
            await Author.vinyl.count()


@pytest.mark.anyio
async def test_a_database_error_is_still_logged(ann, sql_log):
    with override_settings(DEBUG=True):
        with pytest.raises(DatabaseError):
            await Author.vinyl.raw("SELECT * FROM no_such_table")
    assert sql_log[-1].sql == "SELECT * FROM no_such_table"


@both_modes
def test_a_stream_logs_its_declare_as_django_does(ann, vinyl_mode, sql_log):
    with override_settings(DEBUG=True):
        yield stream_names()
    declares = [r.sql for r in sql_log if r.sql.startswith("DECLARE")]
    assert len(declares) == 1, [r.sql for r in sql_log]
    hold = "WITH HOLD " if vinyl_mode == "sync" else ""  # async: inside a transaction
    assert re.fullmatch(
        rf'DECLARE "\w+" NO SCROLL CURSOR {hold}FOR SELECT "testapp_author"."id", '
        '"testapp_author"."name", "testapp_author"."born" FROM "testapp_author" WHERE '
        '"testapp_author"."name" = \'Ann\'',
        declares[0],
    )
    if vinyl_mode == "async":  # outside atomic() the stream runs in a transaction of its own
        assert [r.sql for r in sql_log] == ["BEGIN", declares[0], "COMMIT"]


@maybe_async
def stream_names():
    if vinyl.is_async():  # `for` and `async for` cannot be written once
        yield _stream_async()
    else:
        list(Author.vinyl.filter(name="Ann").iterator(chunk_size=10))


async def _stream_async():
    async for _ in Author.vinyl.filter(name="Ann").iterator(chunk_size=10):
        pass


@pytest.mark.anyio
async def test_raw_sql_is_logged(ann, sql_log):
    with override_settings(DEBUG=True):
        rows = await Author.vinyl.raw("SELECT * FROM testapp_author WHERE name = %s", ["Ann"])
    assert [a.name for a in rows] == ["Ann"]
    assert sql_log[-1].sql == "SELECT * FROM testapp_author WHERE name = 'Ann'"
    assert sql_log[-1].params == ("Ann",)


@both_modes
def test_a_refused_statement_is_logged_too(ann, sql_log):
    def refuse(execute, sql, params, many, context):
        raise Refused(sql)

    with override_settings(DEBUG=True), connection.execute_wrapper(refuse):
        with pytest.raises(Refused):
            yield Author.vinyl.filter(name="Ann").count()
    assert len(sql_log) == 1


@maybe_async
def in_block_with_failing_savepoint(ann):
    if vinyl.is_async():  # `with` and `async with` cannot be written once
        yield _failing_async(ann)
    else:
        with atomic():
            yield Author.vinyl.filter(pk=ann.pk).count()
            with pytest.raises(Refused), atomic():
                yield Book.vinyl.create(author=ann, title="T")
                raise Refused


async def _failing_async(ann):
    async with atomic():
        await Author.vinyl.filter(pk=ann.pk).count()
        with pytest.raises(Refused):
            async with atomic():
                await Book.vinyl.create(author=ann, title="T")
                raise Refused


@both_modes
def test_a_rolled_back_savepoint_logs_as_a_statement(ann, sql_log):
    with override_settings(DEBUG=True):
        yield in_block_with_failing_savepoint(ann)
    rollback_to = [r for r in sql_log if r.sql.startswith("ROLLBACK TO SAVEPOINT")]
    assert len(rollback_to) == 1 and rollback_to[0].params is None
    assert [r.sql.split()[0] for r in sql_log][-1] == "COMMIT"


@both_modes
def test_vinyl_wrappers_see_the_same_statements_in_both_modes(ann):
    seen = []

    @maybe_async
    def record(execute, sql, params, many, context):
        seen.append(sql.split()[0])
        return (yield execute(sql, params, many, context))

    with vinyl.execute_wrapper(record):
        yield in_block_with_failing_savepoint(ann)
    assert seen == ["SELECT", "INSERT"]  # transaction control is Django's in sync mode


@both_modes
def test_a_prefetchs_queries_are_listed_as_djangos_own(ann):
    """Prefetching runs Django's code once (async mode: in a worker thread, with compile-only
    connections); its queries, from the query cache or not, are listed on the caller's
    connection object, as Django lists its own."""
    yield Book.vinyl.create(author=ann, title="T")
    for _ in range(2):  # cold, then each query from a template
        conn = connections["default"]
        conn.force_debug_cursor = True
        try:
            start = len(conn.queries_log)
            authors = yield Author.vinyl.filter(name="Ann").prefetch_related("books")
            listed = [q["sql"] for q in list(conn.queries_log)[start:]]
        finally:
            conn.force_debug_cursor = False
        assert [b.title for b in authors[0].books.all()] == ["T"]
        assert len(listed) == 2 and '"testapp_book"."author_id" IN' in listed[1], listed
