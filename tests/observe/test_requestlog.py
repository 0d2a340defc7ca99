"""vinyl.QueryLog and QueryLogMiddleware: per-context statement logs and the N+1 detector."""

import asyncio
import warnings

import pytest

from tests.testapp.models import Author, Book
from vinyl import NPlusOneError, NPlusOneWarning, QueryLog, QueryLogMiddleware, maybe_async
from vinyl.db.requestlog import shape
from vinyl.testing import both_modes

HERE = __file__


@pytest.fixture
def authors(db):
    authors = Author.objects.bulk_create([Author(name=f"A{i}") for i in range(6)])
    Book.objects.bulk_create([Book(author=a, title=f"T{a.name}") for a in authors])
    return authors


def line_of(text):
    with open(HERE) as source:
        return next(i for i, line in enumerate(source, 1) if text in line)


@both_modes
def test_the_log_records_statements_with_durations_and_origins(authors):
    with QueryLog() as log:
        yield Author.vinyl.count()  # the count
        yield Book.vinyl.filter(title="TA0").exists()
    assert [q.sql.split()[0] for q in log.queries] == ["SELECT", "SELECT"]
    assert log.queries[1].params[-1] == "TA0"
    assert all(q.duration > 0 and q.alias == "default" for q in log.queries)
    assert log.total_time == sum(q.duration for q in log.queries)
    assert log.queries[0].origin == f"{HERE}:{line_of('# the count')} in " + (
        "test_the_log_records_statements_with_durations_and_origins"
    )
    assert log.repeated == []


@maybe_async
def books_one_by_one(authors):  # universal user code: its own line is the origin
    counts = []
    for author in authors:
        counts.append((yield author.q.books.count()))  # the N+1
    return counts


@both_modes
def test_a_repeated_shape_raises_naming_the_users_line(authors):
    with QueryLog(n_plus_one=5, on_n_plus_one="raise") as log:
        with pytest.raises(NPlusOneError) as caught:
            yield books_one_by_one(authors)
    message = str(caught.value)
    assert "the same statement ran 5 times" in message
    assert f"{HERE}:{line_of('# the N+1')} in books_one_by_one" in message
    assert 'WHERE "testapp_book"."author_id" = %s' in message
    assert len(log.queries) == 5 and len(log.repeated) == 1


@both_modes
def test_a_repeated_shape_warns_at_the_users_line(authors):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with QueryLog(n_plus_one=3) as log:
            counts = yield books_one_by_one(authors)
    assert counts == [1] * 6  # a warning does not stop the work
    (warning,) = [w for w in caught if w.category is NPlusOneWarning]
    assert warning.filename == HERE and warning.lineno == line_of("# the N+1")
    assert len(log.repeated) == 1 and log.repeated[0][1] == 3


@both_modes
def test_below_the_threshold_and_transactions_are_not_reported(authors):
    with QueryLog(n_plus_one=7, on_n_plus_one="raise") as log:
        yield books_one_by_one(authors)
    assert len(log.queries) == 6 and log.repeated == []


@both_modes
def test_under_pytest_the_warning_fails_the_test(authors):
    # The suite's filterwarnings = error turns the default warning into an exception.
    with QueryLog(n_plus_one=2):
        with pytest.raises(NPlusOneWarning, match="ran 2 times"):
            yield books_one_by_one(authors)


def test_shapes_ignore_literals_parameter_lists_and_comments():
    a = shape('SELECT * FROM "t" WHERE "t"."id" IN (%s, %s, %s) LIMIT 21 /* tag */')
    b = shape('SELECT *  FROM "t" WHERE "t"."id" IN (%s) LIMIT 3')
    assert a == b == 'SELECT * FROM "t" WHERE "t"."id" IN (%s, ...) LIMIT %s'
    assert shape("SELECT 'it''s', \"col_2\" FROM t2") == 'SELECT %s, "col_2" FROM t2'


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="on_n_plus_one must be one of"):
        QueryLog(on_n_plus_one="shout")
    with pytest.raises(ValueError, match="n_plus_one must be 2 or more"):
        QueryLogMiddleware(None, n_plus_one=1)


@pytest.mark.anyio
async def test_concurrent_logs_on_one_loop_keep_their_own_statements(authors):
    async def request(name, n):
        with QueryLog() as log:
            for _ in range(n):
                await Author.vinyl.filter(name=name).count()
                await asyncio.sleep(0)  # let the other request run in between
        return log

    first, second = await asyncio.gather(request("A1", 3), request("A2", 4))
    assert [q.params for q in first.queries] == [("A1",)] * 3
    assert [q.params for q in second.queries] == [("A2",)] * 4


@pytest.mark.anyio
async def test_the_middleware_gives_each_request_its_log(authors):
    logs = {}

    async def app(scope, receive, send):
        logs[scope["path"]] = QueryLog.current()
        for _ in range(int(scope["path"].strip("/"))):
            await Author.vinyl.count()
            await asyncio.sleep(0)

        # The work of a child task is the request's too (Django's ASGIHandler starts one).
        async def child():
            return await Author.vinyl.filter(name="A0").exists()

        await asyncio.create_task(child())
        await send({"type": "http.response.start", "status": 200, "headers": []})

    async def send(message):
        pass

    middleware = QueryLogMiddleware(app, n_plus_one=None)
    scopes = [{"type": "http", "method": "GET", "path": f"/{n}"} for n in (2, 5)]
    await asyncio.gather(*(middleware(scope, None, send) for scope in scopes))
    assert len(logs["/2"].queries) == 3 and len(logs["/5"].queries) == 6
    assert logs["/5"].label == "GET /5"
    assert QueryLog.current() is None


@pytest.mark.anyio
async def test_the_middleware_reports_n_plus_one_of_a_request(authors):
    async def app(scope, receive, send):
        await books_one_by_one(authors)

    middleware = QueryLogMiddleware(app, n_plus_one=4, on_n_plus_one="raise")
    with pytest.raises(NPlusOneError, match=r"N\+1 queries in GET /books: .* ran 4 times"):
        await middleware({"type": "http", "method": "GET", "path": "/books"}, None, None)


@maybe_async
def titles_one_by_one(authors):  # yields querysets (awaited by the driver), not operations
    titles = []
    for author in authors:
        titles += yield author.q.books.values_list("title", flat=True)  # the queryset N+1
    return titles


@both_modes
def test_the_origin_of_an_awaited_queryset_is_the_users_line(authors):
    with QueryLog(n_plus_one=3, on_n_plus_one="raise"):
        with pytest.raises(NPlusOneError) as caught:
            yield titles_one_by_one(authors)
    assert f"{HERE}:{line_of('# the queryset N+1')} in titles_one_by_one" in str(caught.value)


@pytest.mark.anyio
async def test_sync_code_in_a_worker_thread_is_logged_too(authors):
    # How Django runs a sync view under ASGI: sync_to_async copies the request's context.
    from asgiref.sync import sync_to_async
    from django.db import connections

    def sync_view():
        return Author.vinyl.filter(name="A1").count()  # sync mode: no loop in this thread

    with QueryLog() as log:
        assert await sync_to_async(sync_view)() == 1
    await sync_to_async(connections.close_all)()  # the worker thread's own connection
    assert len(log.queries) == 1 and log.queries[0].params == ("A1",)
    assert log.queries[0].origin.endswith("in sync_view")
