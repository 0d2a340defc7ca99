"""Seeing the demo's queries: Django's SQL log of an async order, and the N+1 detector.

``place_order`` updates the stock of each dish it sells with one UPDATE per dish: a real N+1 that
vinyl.QueryLog names, in both modes and through the ASGI middleware.
"""

import logging
import warnings

import httpx
import pytest
from django.test.utils import override_settings

import vinyl
from demo.food import services
from demo.food.models import Customer, Dish
from vinyl import NPlusOneError, NPlusOneWarning, QueryLog, QueryLogMiddleware
from vinyl.testing import both_modes

ORDER = ["Ramen", "Tiramisu", "Diavola", "Green curry"]  # four dishes: four stock UPDATEs


@pytest.fixture
def ids(db):
    dishes = dict(Dish.objects.values_list("name", "pk"))
    return Customer.objects.order_by("pk").first().pk, [[dishes[name], 1] for name in ORDER]


def update_line():
    with open(services.__file__) as source:
        return next(i for i, line in enumerate(source, 1) if "yield dish.update(" in line)


@vinyl.maybe_async
def order_in_block(customer, items):
    if vinyl.is_async():  # `with` and `async with` cannot be written once
        return (yield _order_async(customer, items))
    with vinyl.atomic():
        return services.place_order(customer, items, source="test")


async def _order_async(customer, items):
    async with vinyl.atomic():
        return await services.place_order(customer, items, source="test")


@both_modes
def test_the_detector_names_the_stock_update_line(ids):
    customer, items = ids
    with QueryLog(n_plus_one=4, on_n_plus_one="raise") as log:
        with pytest.raises(NPlusOneError) as caught:
            yield order_in_block(customer, items)
    assert f"{services.__file__}:{update_line()} in place_order" in str(caught.value)
    assert 'UPDATE "food_dish" SET "stock" = %s WHERE "food_dish"."id" = %s' in str(caught.value)
    assert (yield Dish.vinyl.filter(stock__lt=0).exists()) is False
    assert log.queries[0].sql == "BEGIN" or not vinyl.is_async()


@pytest.mark.anyio
async def test_the_order_endpoint_logs_its_sql_and_its_n_plus_one(ids, caplog):
    from demo.asgi import django_application

    customer, items = ids
    app = QueryLogMiddleware(django_application, n_plus_one=4)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x")
    caplog.set_level(logging.DEBUG, logger="django.db.backends")
    caplog.set_level(logging.DEBUG, logger="vinyl.querylog")
    with override_settings(DEBUG=True), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with client:
            placed = await client.post("/vinyl/orders", json={"customer": customer, "items": items})
    assert placed.status_code == 201, placed.text
    sql = [r.sql for r in caplog.records if r.name == "django.db.backends"]
    assert sql[0] == "BEGIN" and sql[-1] == "COMMIT"
    assert sum(s.startswith('UPDATE "food_dish" SET "stock"') for s in sql) == 4
    summary = [r.getMessage() for r in caplog.records if r.name == "vinyl.querylog"]
    assert summary and summary[-1].startswith(f"POST /vinyl/orders: {len(sql)} statements")
    (warning,) = [w for w in caught if w.category is NPlusOneWarning]
    assert "N+1 queries in POST /vinyl/orders" in str(warning.message)
    assert (warning.filename, warning.lineno) == (services.__file__, update_line())
    print("\n".join(r.getMessage() for r in caplog.records), "\n", warning.message)
