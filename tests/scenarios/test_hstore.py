"""HStoreField (django.contrib.postgres) reads and filters as in Django, in both modes.

The hstore extension is created for this module only (and the module skipped where PostgreSQL
lacks it), and the model lives in an isolated app registry, so the shared schema needs neither.
"""

from __future__ import annotations

import pytest
from django.contrib.postgres.fields import HStoreField
from django.contrib.postgres.signals import get_hstore_oids
from django.db import connection, models
from django.test.utils import isolate_apps

from tests.scenarios.differential import django_manager, norm, vinyl_manager
from vinyl import VinylModel
from vinyl.testing import both_modes


@pytest.fixture(scope="module")
def bag(django_db_setup):
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'hstore'")
        if cursor.fetchone() is None:
            pytest.skip("PostgreSQL has no hstore extension here")
        cursor.execute("CREATE EXTENSION IF NOT EXISTS hstore")
    get_hstore_oids.cache_clear()
    connection.close()  # Django registers the hstore type on its next connection

    with isolate_apps("tests.testapp"):

        class Bag(VinylModel):
            data = HStoreField(null=True)
            label = models.CharField(max_length=10)

            class Meta:
                app_label = "testapp"

    with connection.schema_editor() as editor:
        editor.create_model(Bag)
    Bag.objects.create(label="ab", data={"a": "1", "b": None})
    Bag.objects.create(label="c", data={"c": "x y"})
    Bag.objects.create(label="none", data=None)
    yield Bag
    with connection.schema_editor() as editor:
        editor.delete_model(Bag)
    connection.close()


CASES = {
    "all": lambda M, Bag: M(Bag).order_by("pk"),
    "values": lambda M, Bag: M(Bag).order_by("pk").values_list("data", "data__a"),
    "key": lambda M, Bag: M(Bag).filter(data__a="1"),
    "contains": lambda M, Bag: M(Bag).filter(data__contains={"c": "x y"}),
    "exact": lambda M, Bag: M(Bag).filter(data={"c": "x y"}),
    "has_key": lambda M, Bag: M(Bag).filter(data__has_key="b"),
    "keys": lambda M, Bag: M(Bag).order_by("pk").values_list("data__keys", flat=True),
    "get": lambda M, Bag: M(Bag).get(label="ab"),
}


@pytest.fixture
def expected(bag, case):
    result = CASES[case](django_manager, bag)
    return norm(list(result) if hasattr(result, "query") else result)


@pytest.mark.parametrize("case", list(CASES))
@both_modes
def test_hstore_same_as_django(bag, case, expected):
    result = yield CASES[case](vinyl_manager, bag)
    assert norm(result) == expected


@both_modes
def test_hstore_is_a_dict(bag):
    obj = yield bag.vinyl.get(label="ab")
    assert obj.data == {"a": "1", "b": None}
