"""Every field type, read and used as a query parameter, gives what Django gives (both modes).

Async mode adapts parameters with its own psycopg connection (pool); these cases check that each
type is sent (filters, ``Value()`` annotations) and read back (values, converters) exactly as on
Django's connection.
"""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo
from decimal import Decimal

import pytest
from django.db.backends.postgresql.psycopg_any import DateTimeTZRange, NumericRange
from django.db.models import F, Max, Min, Value

from tests.scenarios.differential import django_manager, norm, seeded_database, vinyl_manager
from tests.testapp.models import AllFields
from vinyl.testing import both_modes

UTC = dt.UTC
AMSTERDAM = zoneinfo.ZoneInfo("Europe/Amsterdam")

#: A value of each field equal to the one stored in the first seeded row.
STORED = {
    "big": 2**40,
    "small": -7,
    "positive": 7,
    "positive_big": 2**50,
    "positive_small": 3,
    "floating": 0.1,
    "decimal": Decimal("12.34"),
    "flag": True,
    "char": "héllo",
    "text": "line one\nline two",
    "slug": "a-slug",
    "email": "ann@example.com",
    "url": "https://example.com/x?y=1",
    "ip": "2001:db8::1",
    "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "day": dt.date(2024, 2, 29),
    "clock": dt.time(23, 59, 59, 123456),
    # The same instant as stored (00:59:59 UTC), written in another zone, across a DST change.
    "moment": dt.datetime(2024, 3, 31, 1, 59, 59, tzinfo=AMSTERDAM),
    "duration": dt.timedelta(days=2, hours=3, microseconds=5),
    "blob": b"\x00\x01binary\xff",
    "data": {"key": "value", "n": [1, 2, {"deep": None}], "f": 1.5, "t": True},
    "numbers": [3, 1, 2],
    "words": ["a", "b"],
    "int_range": NumericRange(1, 10),
    "moment_range": DateTimeTZRange(
        dt.datetime(2024, 1, 1, tzinfo=UTC), dt.datetime(2024, 1, 2, tzinfo=UTC)
    ),
    "decimal_range": NumericRange(Decimal("0.5"), Decimal("2.5"), "[]"),
    "generated": 2**40 - 7,
}

#: Fields whose values are ordered in SQL (so gt/lt/Min/Max make sense).
ORDERED = [
    "big", "small", "positive", "positive_big", "positive_small", "floating", "decimal", "char",
    "text", "slug", "email", "url", "ip", "uuid", "day", "clock", "moment", "duration", "blob",
    "generated",
]  # fmt: skip

#: Python values Django's Value() can type by itself.
SELF_TYPED = [
    "big", "floating", "decimal", "flag", "char", "uuid", "day", "clock", "moment", "duration",
    "blob",
]  # fmt: skip


def pks(qs):
    return qs.order_by("pk").values_list("pk", flat=True)


CASES = {}
for name, value in STORED.items():
    CASES[f"{name}-exact"] = lambda M, n=name, v=value: pks(M(AllFields).filter(**{n: v}))
    CASES[f"{name}-exclude"] = lambda M, n=name, v=value: pks(M(AllFields).exclude(**{n: v}))
    CASES[f"{name}-isnull"] = lambda M, n=name: pks(M(AllFields).filter(**{f"{n}__isnull": True}))
    CASES[f"{name}-values"] = lambda M, n=name: M(AllFields).order_by("pk").values_list(n)
    CASES[f"{name}-only"] = lambda M, n=name: M(AllFields).only(n).order_by("pk")
    CASES[f"{name}-defer"] = lambda M, n=name: M(AllFields).defer(n).order_by("-pk")
for name in ORDERED:
    value = STORED[name]
    CASES[f"{name}-gte"] = lambda M, n=name, v=value: pks(M(AllFields).filter(**{f"{n}__gte": v}))
    CASES[f"{name}-lt"] = lambda M, n=name, v=value: pks(M(AllFields).filter(**{f"{n}__lt": v}))
    CASES[f"{name}-in"] = lambda M, n=name, v=value: pks(M(AllFields).filter(**{f"{n}__in": [v]}))
    CASES[f"{name}-minmax"] = lambda M, n=name: M(AllFields).aggregate(Min(n), Max(n))
    CASES[f"{name}-order"] = lambda M, n=name: (
        M(AllFields).order_by(F(n).asc(nulls_first=True), "pk").values_list("pk", n)
    )
for name in SELF_TYPED:
    value = STORED[name]
    CASES[f"{name}-value"] = lambda M, v=value: (
        M(AllFields).annotate(v=Value(v)).order_by("pk").values_list("v", flat=True)[:1]
    )
CASES["ip-v4"] = lambda M: pks(M(AllFields).filter(ip="10.0.0.1"))
CASES["json-list"] = lambda M: pks(M(AllFields).filter(data=["list", 1]))
CASES["json-key-transform"] = lambda M: M(AllFields).order_by("pk").values_list("data__n__2")
CASES["json-has-key"] = lambda M: pks(M(AllFields).filter(data__has_key="t"))
CASES["array-overlap"] = lambda M: pks(M(AllFields).filter(numbers__overlap=[2, 9]))
CASES["array-len"] = lambda M: pks(M(AllFields).filter(numbers__len=0))
CASES["range-upper-inf"] = lambda M: pks(M(AllFields).filter(int_range__startswith=None))
CASES["range-overlap"] = lambda M: pks(M(AllFields).filter(int_range__overlap=NumericRange(4, 6)))
CASES["datetime-range-contains"] = lambda M: pks(
    M(AllFields).filter(moment_range__contains=dt.datetime(2024, 1, 1, 12, tzinfo=AMSTERDAM))
)
CASES["decimal-range-contains"] = lambda M: pks(
    M(AllFields).filter(decimal_range__contains=Decimal("2.5"))
)
CASES["time-lookups"] = lambda M: (
    M(AllFields)
    .filter(clock__hour=23)
    .values_list("moment__date", "moment__hour", "day__week_day", "duration")
)


@pytest.fixture(scope="module")
def seeded(django_db_setup):
    """The tests of this module only read: seed once."""
    yield from seeded_database()


@pytest.fixture
def expected(seeded, case):
    try:
        result = CASES[case](django_manager)
        return norm(list(result) if hasattr(result, "query") else result)
    except Exception as exc:
        return norm(exc)


@pytest.mark.parametrize("case", list(CASES))
@both_modes
def test_field_same_as_django(case, expected):
    try:
        result = yield CASES[case](vinyl_manager)
    except Exception as exc:
        result = exc
    assert norm(result) == expected


@both_modes
def test_seeded_values_read_back(seeded):
    """The values read equal the values written, with Django's Python types."""
    obj = yield AllFields.vinyl.get(pk=1)
    for name, value in STORED.items():
        read = getattr(obj, name)
        assert read == value, name
        if name != "blob":  # BinaryField reads as memoryview, as in Django
            assert type(read) is type(value), name
    assert bytes(obj.blob) == STORED["blob"]
    assert obj.moment.tzinfo == UTC  # Django returns aware datetimes in UTC
    empty = yield AllFields.vinyl.get(pk=3)
    assert (empty.flag, empty.data, empty.ip, empty.words, empty.int_range) == (
        None,
        None,
        None,
        None,
        None,
    )
