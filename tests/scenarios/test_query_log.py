"""Django's query log (DEBUG, or a test's assertNumQueries/CaptureQueriesContext) holds vinyl's
statements in both modes, as it holds those of Django's own a-methods (found by Django's own
test suite, whose query-count assertions read it)."""

from __future__ import annotations

from django.db import connection

from tests.testapp.models import Author, Book
from vinyl.testing import both_modes


@both_modes
def test_statements_reach_djangos_query_log(db):
    ann = yield Author.vinyl.create(name="Ann")
    connection.force_debug_cursor = True  # what CaptureQueriesContext and DEBUG=True turn on
    try:
        start = len(connection.queries_log)
        yield Book.vinyl.create(author=ann, title="A")
        assert (yield Book.vinyl.filter(author__name="Ann").count()) == 1
        logged = list(connection.queries_log)[start:]
    finally:
        connection.force_debug_cursor = False
    sqls = [q["sql"] for q in logged]
    assert len(sqls) == 2, sqls
    assert sqls[0].startswith("INSERT INTO") and "'A'" in sqls[0]  # parameters bound, as Django
    assert sqls[1].startswith("SELECT COUNT(*)") and "'Ann'" in sqls[1]
    assert all(float(q["time"]) >= 0 for q in logged)


@both_modes
def test_nothing_logged_when_django_does_not_log(db):
    before = len(connection.queries_log)
    yield Author.vinyl.create(name="Ann")
    assert len(connection.queries_log) == before
