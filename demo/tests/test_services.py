"""The universal services, in both modes (vinyl.testing.both_modes)."""

from decimal import Decimal

import pytest

from demo.food import services
from demo.food.models import Customer, DeliveryOrder, Dish, Order, OrderLine
from vinyl.testing import both_modes


@pytest.fixture
def orders(db):
    """Two orders placed with Django's own ORM: one to eat in, one delivered."""
    ann, bob = Customer.objects.order_by("pk")[:2]
    ramen, sorbet = Dish.objects.get(name="Ramen"), Dish.objects.get(name="Mango sorbet")
    eat_in = Order.objects.create(customer=ann, total=Decimal("32.00"), source="test")
    OrderLine.objects.create(order=eat_in, dish=ramen, quantity=2, unit_price=ramen.price)
    OrderLine.objects.create(order=eat_in, dish=sorbet, quantity=1, unit_price=sorbet.price)
    delivered = DeliveryOrder.objects.create(
        customer=bob, total=Decimal("5.00"), source="test", address="1 Main Street"
    )
    OrderLine.objects.create(order=delivered, dish=sorbet, quantity=1, unit_price=sorbet.price)
    return eat_in.pk, delivered.pk


@both_modes
def test_list_dishes(db):
    menu = yield services.list_dishes()
    assert [d["name"] for d in menu] == sorted(d["name"] for d in menu)
    assert len(menu) == (yield Dish.vinyl.count())
    curry = next(d for d in menu if d["name"] == "Green curry")
    assert sorted(curry["tags"]) == ["gluten-free", "spicy", "vegan"]
    vegan = yield services.list_dishes("vegan")
    expected = yield Dish.vinyl.filter(tags__name="vegan").values_list("name", flat=True)
    assert {d["name"] for d in vegan} == set(expected)


@both_modes
def test_order_status(orders):
    eat_in, delivered = orders
    found = yield services.order_status(eat_in)
    assert found == {
        "id": eat_in,
        "status": "placed",
        "customer": "Customer 1",
        "total": "32.00",
        "address": None,
        "lines": [
            {"dish": "Ramen", "quantity": 2, "unit_price": "13.50"},
            {"dish": "Mango sorbet", "quantity": 1, "unit_price": "5.00"},
        ],
    }
    found = yield services.order_status(delivered)
    assert found["address"] == "1 Main Street"
    assert (yield services.order_status(10**9)) is None


@both_modes
def test_kitchen_report(orders):
    report = yield services.kitchen_report(top=2, low_stock=30)
    assert report == {
        "orders": 2,
        "revenue": "37.00",
        "deliveries": 1,
        "by_status": {"placed": 2},
        "best_sellers": [["Mango sorbet", 2], ["Ramen", 2]],
        "low_stock": [["Wagyu steak", 15], ["Lobster roll", 25]],
    }


def test_validate_items():
    assert services.validate_items([[1, 2], [3, 1], [1, 1]]) == {1: 3, 3: 1}
    for bad in ([], None, [[1, 0]], [[1]], [["x", 1]], "12"):
        with pytest.raises(services.OrderRejected):
            services.validate_items(bad)
