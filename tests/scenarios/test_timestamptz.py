"""timestamptz values read by vinyl equal Django's, whichever loader vinyl's pool picks.

vinyl's async connections load timestamptz with psycopg's C loader while the session's time zone
is Django's (vinyl.db.pool._with_fast_timestamptz), and with Django's own loader otherwise: after a
``SET TIME ZONE`` Django labels the session's wall time with its own time zone, and so must vinyl.
"""

import datetime

import pytest
from django.db import connection, transaction

from tests.testapp.models import Author, Book
from vinyl import atomic, maybe_async
from vinyl.connection import MULTI, NO_RESULTS, run
from vinyl.testing import both_modes

MOMENTS = [
    datetime.datetime(2024, 3, 31, 0, 59, 59, 999999, tzinfo=datetime.UTC),
    datetime.datetime(2024, 10, 27, 1, 30, tzinfo=datetime.UTC),
    datetime.datetime(1900, 1, 1, tzinfo=datetime.UTC),
]
SET_ZONE = "SET LOCAL TIME ZONE 'America/New_York'"


@pytest.fixture
def django_answers(db):
    ann = Author.objects.create(name="Ann")
    for n, moment in enumerate(MOMENTS):
        Book.objects.create(author=ann, title=f"B{n}", published=moment)
    plain = list(Book.objects.order_by("pk").values_list("published", flat=True))
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(SET_ZONE)
        zoned = list(Book.objects.order_by("pk").values_list("published", flat=True))
    return plain, zoned


def same(values, expected):
    return (
        values == expected
        and [v.tzinfo for v in values] == [v.tzinfo for v in expected]
        and [v.replace(tzinfo=None) for v in values] == [v.replace(tzinfo=None) for v in expected]
    )


@both_modes
def test_timestamptz_equals_djangos_in_the_session_time_zone_and_after_set_time_zone(
    django_answers,
):
    plain, zoned = django_answers
    assert same((yield Book.vinyl.order_by("pk").values_list("published", flat=True)), plain)
    assert all(value.tzinfo is datetime.UTC for value in plain)

    @atomic
    @maybe_async
    def after_set_time_zone():
        yield run("default", SET_ZONE, None, NO_RESULTS)
        rows = yield run("default", "SELECT published FROM testapp_book ORDER BY id", None, MULTI)
        values = yield Book.vinyl.order_by("pk").values_list("published", flat=True)
        return [value for (value,) in rows], values

    raw, values = yield after_set_time_zone()
    assert same(values, zoned)
    assert same(raw, zoned)
    assert zoned != plain  # Django's own answer changes with the session's zone
