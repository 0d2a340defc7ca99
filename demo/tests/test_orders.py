"""Placing orders: the universal service in a sync and an async transaction, and concurrently."""

import asyncio
from io import StringIO

import pytest
from django.core.management import call_command

import vinyl
from demo.food import services
from demo.food.models import Customer, DeliveryOrder, Dish, Order, OrderLine
from vinyl.testing import both_modes


@pytest.fixture
def menu(db):
    return {dish.name: dish for dish in Dish.objects.all()}


@pytest.fixture
def customer(db):
    return Customer.objects.order_by("pk").first().pk


# The checks are universal code too, so the async tests can run them on their event loop.
@vinyl.maybe_async
def assert_placed(placed, menu, address=""):
    order = yield Order.vinyl.get(pk=placed["id"])
    assert order.source == "test" and order.status == "placed"
    assert str(order.total) == placed["total"] == "36.50"  # 2 x 11.50 + 13.50
    lines = yield OrderLine.vinyl.filter(order=order).values_list(
        "dish__name", "quantity", "unit_price"
    )
    assert sorted((name, q, str(p)) for name, q, p in lines) == [
        ("Cheeseburger", 2, "11.50"),
        ("Ramen", 1, "13.50"),
    ]
    delivery = yield DeliveryOrder.vinyl.filter(pk=order.pk, address=address).exists()
    assert delivery == bool(address)
    stock = dict((yield Dish.vinyl.values_list("name", "stock")))
    assert stock["Cheeseburger"] == menu["Cheeseburger"].stock - 2
    assert stock["Ramen"] == menu["Ramen"].stock - 1


@pytest.fixture
def customers(db):
    return list(Customer.objects.order_by("pk").values_list("pk", flat=True)[:40])


def items(menu, *pairs):
    return [[menu[name].pk, quantity] for name, quantity in pairs]


@vinyl.maybe_async
def assert_nothing_changed(menu, notified):
    assert not (yield Order.vinyl.exists()) and not (yield OrderLine.vinyl.exists())
    stock = yield Dish.vinyl.values_list("name", "stock")
    assert dict(stock) == {name: dish.stock for name, dish in menu.items()}
    assert services.KITCHEN_NOTIFIED["test"] == notified


def test_place_order_sync(menu, customer):
    notified = services.KITCHEN_NOTIFIED["test"]
    with vinyl.atomic():
        placed = services.place_order(
            customer, items(menu, ("Cheeseburger", 2), ("Ramen", 1)), "1 Main St", "test"
        )
        assert services.KITCHEN_NOTIFIED["test"] == notified  # not before the commit
    assert services.KITCHEN_NOTIFIED["test"] == notified + 1
    assert_placed(placed, menu, "1 Main St")


def test_out_of_stock_sync(menu, customer):
    notified = services.KITCHEN_NOTIFIED["test"]
    with pytest.raises(services.OutOfStock, match="Wagyu steak: 16 wanted, 15 left"):
        with vinyl.atomic():
            services.place_order(
                customer, items(menu, ("Ramen", 1), ("Wagyu steak", 16)), "", "test"
            )
    assert_nothing_changed(menu, notified)


@pytest.mark.anyio
@pytest.mark.parametrize("address", ["", "2 Side St"])
async def test_place_order_async(menu, customer, address):
    notified = services.KITCHEN_NOTIFIED["test"]
    try:
        async with vinyl.atomic():
            placed = await services.place_order(
                customer, items(menu, ("Cheeseburger", 2), ("Ramen", 1)), address, "test"
            )
            assert services.KITCHEN_NOTIFIED["test"] == notified
        assert services.KITCHEN_NOTIFIED["test"] == notified + 1
        await assert_placed(placed, menu, address)
    finally:
        await vinyl.close_pools()


@pytest.mark.anyio
async def test_out_of_stock_async(menu, customer):
    notified = services.KITCHEN_NOTIFIED["test"]
    try:
        with pytest.raises(services.OutOfStock):
            async with vinyl.atomic():
                await services.place_order(
                    customer, items(menu, ("Ramen", 1), ("Wagyu steak", 16)), "", "test"
                )
        with pytest.raises(services.OrderRejected, match="no customer"):
            async with vinyl.atomic():
                await services.place_order(10**9, items(menu, ("Ramen", 1)), "", "test")
        await assert_nothing_changed(menu, notified)
    finally:
        await vinyl.close_pools()


@pytest.mark.anyio
async def test_concurrent_orders_never_oversell(menu, customers):
    """40 concurrent orders for a dish with 15 left: exactly 15 commit, the rest roll back."""
    wanted = items(menu, ("Wagyu steak", 1), ("Miso soup", 1))

    async def order(customer):
        try:
            async with vinyl.atomic():
                return await services.place_order(customer, wanted, "", "test")
        except services.OutOfStock:
            return None

    try:
        results = await asyncio.gather(*(order(c) for c in customers))
        assert len([r for r in results if r is not None]) == 15
        stock = dict(await Dish.vinyl.values_list("name", "stock"))
        assert stock["Wagyu steak"] == 0
        assert stock["Miso soup"] == menu["Miso soup"].stock - 15
        assert await Order.vinyl.count() == 15 and await OrderLine.vinyl.count() == 30
    finally:
        await vinyl.close_pools()


def test_kitchen_report_command(menu, customer):
    for _ in range(3):
        with vinyl.atomic():
            services.place_order(customer, items(menu, ("Lobster roll", 6)), "", "test")
    out = StringIO()
    call_command("kitchen_report", cook=2, stdout=out)
    assert Order.objects.filter(status="cooking").count() == 2
    assert out.getvalue().splitlines() == [
        "Started cooking 2 order(s).",
        "Orders: 3 (0 deliveries), revenue 504.00",
        "By status: cooking 2, placed 1",
        "Best sellers: Lobster roll (18), Caesar salad (0), Cheeseburger (0), "
        "Diavola (0), Falafel wrap (0)",
        "Low stock: Lobster roll (7)",
        "Menu: 18 dishes, 5 vegan",
    ]


@pytest.fixture
def three_orders(db):
    customer = Customer.objects.first()
    return [Order.objects.create(customer=customer, total=1, source="test").pk for _ in range(3)]


@both_modes
def test_start_cooking(three_orders):
    """A universal operation under @vinyl.atomic: its own transaction in either mode."""
    assert (yield services.start_cooking(2)) == three_orders[:2]
    statuses = yield Order.vinyl.order_by("pk").values_list("status", flat=True)
    assert list(statuses) == ["cooking", "cooking", "placed"]
    assert (yield services.start_cooking(5)) == three_orders[2:]
    assert (yield services.start_cooking(5)) == []
