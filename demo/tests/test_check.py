"""The demo's correctness check finds what it looks for."""

from decimal import Decimal

from demo.__main__ import check_run, snapshot
from demo.food.models import Customer, DeliveryOrder, Dish, Order, OrderLine
from demo.loadtest import RunResult


def place(customer, dish, quantity, address=""):
    fields = {"customer": customer, "total": dish.price * quantity, "source": "vinyl"}
    order = DeliveryOrder.objects.create(address=address, **fields) if address else (
        Order.objects.create(**fields))  # fmt: skip
    OrderLine.objects.create(order=order, dish=dish, quantity=quantity, unit_price=dish.price)
    Dish.objects.filter(pk=dish.pk).update(stock=dish.stock - quantity)
    return order.pk


def test_a_clean_run_passes(db):
    before = snapshot()
    customer, dish = Customer.objects.first(), Dish.objects.get(name="Ramen")
    result = RunResult("vinyl", 1, placed=[place(customer, dish, 2, "1 Main St")])
    result.deliveries = list(result.placed)
    assert check_run(result, before, notified=1) == []


def test_each_problem_is_reported(db):
    before = snapshot()
    customer = Customer.objects.first()
    wagyu = Dish.objects.get(name="Wagyu steak")
    ok = place(customer, wagyu, 20)  # more than the 15 in stock: oversold
    no_lines = Order.objects.create(customer=customer, total=Decimal("9.00"), source="vinyl").pk
    result = RunResult("vinyl", 1, placed=[ok, no_lines], deliveries=[ok])
    problems = check_run(result, before, notified=1)
    assert problems == [
        "1 orders without their lines or with a wrong total",
        "the delivery orders (multi-table rows) differ from those answered",
        f"dish {wagyu.pk} has a negative stock (-5)",
        "1 on_commit notifications for 2 committed orders",
    ]
    Dish.objects.filter(pk=wagyu.pk).update(stock=3)
    Order.objects.create(customer=customer, total=0, source="django")
    problems = check_run(RunResult("vinyl", 1, placed=[ok]), before, notified=1)
    assert problems == [
        "orders from {'django'} appeared during the run",
        "1 orders answered 201 but 3 are in the database",
        "2 orders without their lines or with a wrong total",
        f"dish {wagyu.pk}: stock 3, expected -5",
        "1 on_commit notifications for 3 committed orders",
    ]
