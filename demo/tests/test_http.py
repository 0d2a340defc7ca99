"""The two copies of the API answer alike: /vinyl/… (vinyl) and /django/… (Django's a-methods)."""

import httpx
import pytest

import vinyl
from demo.food.models import Customer, Dish


@pytest.fixture
def ids(db):
    dishes = dict(Dish.objects.values_list("name", "pk"))
    return Customer.objects.order_by("pk").first().pk, dishes


@pytest.fixture
def client():
    from demo.asgi import django_application

    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=django_application), base_url="http://127.0.0.1"
    )


@pytest.mark.anyio
async def test_same_answers(ids, client):
    customer, dishes = ids
    try:
        async with client:
            for prefix in ("vinyl", "django"):
                menu = await client.get(f"/{prefix}/dishes?tag=spicy")
                assert menu.status_code == 200
                assert [d["name"] for d in menu.json()["dishes"]] == [
                    "Diavola", "Green curry", "Lentil dal", "Pad thai"
                ]  # fmt: skip
            orders = {}
            for prefix in ("vinyl", "django"):
                body = {"customer": customer, "address": "3 High St",
                        "items": [[dishes["Ramen"], 2], [dishes["Tiramisu"], 1]]}  # fmt: skip
                placed = await client.post(f"/{prefix}/orders", json=body)
                assert placed.status_code == 201, placed.text
                assert placed.json()["total"] == "33.50"
                orders[prefix] = placed.json()["id"]
            answers = {}
            for prefix in ("vinyl", "django"):
                found = await client.get(f"/{prefix}/orders/{orders[prefix]}")
                assert found.status_code == 200
                answers[prefix] = {**found.json(), "id": None}
            assert answers["vinyl"] == answers["django"]
            assert answers["vinyl"]["address"] == "3 High St"
            assert len(answers["vinyl"]["lines"]) == 2
            reports = [(await client.get(f"/{p}/report")).json() for p in ("vinyl", "django")]
            assert reports[0] == reports[1]
            assert reports[0]["orders"] == 2 and reports[0]["revenue"] == "67.00"
            for prefix in ("vinyl", "django"):
                bad = [
                    (await client.get(f"/{prefix}/orders/999999")).status_code,
                    (await client.post(f"/{prefix}/orders", content=b"{")).status_code,
                    (
                        await client.post(
                            f"/{prefix}/orders",
                            json={"customer": customer, "items": [[dishes["Wagyu steak"], 99]]},
                        )
                    ).status_code,
                    (
                        await client.post(
                            f"/{prefix}/orders", json={"customer": customer, "items": [[123456, 1]]}
                        )
                    ).status_code,
                ]
                assert bad == [404, 400, 409, 400], prefix
    finally:
        await vinyl.close_pools()


@pytest.mark.anyio
async def test_django_views_run_no_vinyl_code(ids, client):
    """The comparison is fair only if /django/… runs Django's ORM alone."""
    from vinyl.connection import capture_queries

    customer, dishes = ids
    body = {"customer": customer, "items": [[dishes["Ramen"], 1]], "address": "4 Low St"}
    try:
        async with client:
            for prefix, expect_vinyl in (("django", False), ("vinyl", True)):
                with capture_queries() as log:
                    placed = await client.post(f"/{prefix}/orders", json=body)
                    for path in ("dishes", f"orders/{placed.json()['id']}", "report"):
                        assert (await client.get(f"/{prefix}/{path}")).status_code == 200
                assert bool(log) is expect_vinyl, (prefix, log)
    finally:
        await vinyl.close_pools()
