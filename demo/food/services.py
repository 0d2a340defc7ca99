"""The service layer, written once as universal code (``@maybe_async`` generators).

The async views (``vinyl_views``) call these functions in async mode and await them; the
``kitchen_report`` management command calls the same functions in sync mode and gets values. Each
``yield`` stands where async code would ``await``.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from decimal import Decimal
from typing import Any

from django.db.models import Count, Prefetch, Sum
from django.db.models.functions import Coalesce

import vinyl
from demo import workers
from vinyl import gather, maybe_async

from .models import Customer, DeliveryOrder, Dish, Order, OrderLine

logger = logging.getLogger("demo.kitchen")

# Orders announced to the kitchen by on_commit callbacks, per source ("vinyl", "django", …).
# A rolled-back order never gets here; the load test checks the count against the database.
KITCHEN_NOTIFIED: Counter[str] = Counter()


class OrderRejected(Exception):
    """The order cannot be placed; ``status`` is the HTTP status the views answer with."""

    status = 400


class OutOfStock(OrderRejected):
    status = 409


def notify_kitchen(order_id: int, source: str) -> None:
    """Tell the kitchen about a committed order (an ``on_commit`` callback)."""
    workers.count(KITCHEN_NOTIFIED, source)  # shared with /stats of every worker process
    logger.debug("kitchen: order %s is in", order_id)


def dish_as_dict(dish: Dish) -> dict[str, Any]:
    return {
        "id": dish.pk,
        "name": dish.name,
        "price": str(dish.price),
        "stock": dish.stock,
        "tags": [tag.name for tag in dish.tags.all()],  # prefetched: no query here
    }


def parse_order(body: bytes) -> dict[str, Any]:
    """Return place_order's arguments from a request body ``{"customer", "items", "address"}``."""
    try:
        data = json.loads(body)
        customer = int(data["customer"])
        address = str(data.get("address") or "")
        return {"customer": customer, "items": data["items"], "address": address}
    except (ValueError, TypeError, KeyError):
        raise OrderRejected(
            'send a JSON object {"customer": id, "items": [[dish_id, quantity], ...], '
            '"address": optional}'
        ) from None


def validate_items(items: Any) -> dict[int, int]:
    """Return ``{dish_id: quantity}`` from the request's ``[[dish_id, quantity], …]``."""
    try:
        wanted = Counter()
        for dish_id, quantity in items:
            if int(quantity) <= 0:
                raise ValueError
            wanted[int(dish_id)] += int(quantity)
    except (TypeError, ValueError):
        raise OrderRejected("items must be a list of [dish_id, quantity > 0] pairs") from None
    if not wanted:
        raise OrderRejected("an order needs at least one item")
    return dict(wanted)


@maybe_async
def list_dishes(tag: str | None = None):
    """Return the menu with each dish's tags (two queries: dishes, then tags prefetched)."""
    dishes = Dish.vinyl.prefetch_related("tags").order_by("name")
    if tag:
        dishes = dishes.filter(tags__name=tag)
    return [dish_as_dict(dish) for dish in (yield dishes)]


@maybe_async
def place_order(customer: int, items: Any, address: str = "", source: str = "vinyl"):
    """Place an order; call it inside ``vinyl.atomic()`` (it locks the dishes it sells).

    Lock the dishes (in pk order, so concurrent orders cannot deadlock), check the stock, insert
    the order (a DeliveryOrder when there is an address) and its lines, take the stock, and
    announce the order to the kitchen once the transaction commits. Raise OutOfStock (the caller's
    atomic block rolls back) or OrderRejected.
    """
    wanted = validate_items(items)
    try:
        buyer = yield Customer.vinyl.get(pk=customer)
    except Customer.DoesNotExist:
        raise OrderRejected(f"no customer {customer}") from None
    dishes = yield Dish.vinyl.select_for_update().filter(pk__in=wanted).order_by("pk")
    if len(dishes) != len(wanted):
        missing = set(wanted) - {dish.pk for dish in dishes}
        raise OrderRejected(f"no dish {sorted(missing)}")
    for dish in dishes:
        if dish.stock < wanted[dish.pk]:
            raise OutOfStock(f"{dish.name}: {wanted[dish.pk]} wanted, {dish.stock} left")
    total = sum((dish.price * wanted[dish.pk] for dish in dishes), Decimal(0))
    if address:
        order = DeliveryOrder.vinyl(customer=buyer, total=total, source=source, address=address)
    else:
        order = Order.vinyl(customer=buyer, total=total, source=source)
    yield order.insert()
    yield OrderLine.vinyl.bulk_create(
        OrderLine.vinyl(order=order, dish=dish, quantity=wanted[dish.pk], unit_price=dish.price)
        for dish in dishes
    )
    for dish in dishes:
        yield dish.update(stock=dish.stock - wanted[dish.pk])
    yield vinyl.on_commit(lambda: notify_kitchen(order.pk, source))
    return {"id": order.pk, "total": str(total), "delivery": bool(address)}


@maybe_async
def order_status(order_id: int):
    """Return an order with its customer, lines and delivery address, or None."""
    lines = OrderLine.vinyl.select_related("dish").order_by("pk")
    order = yield (
        Order.vinyl.select_related("customer", "deliveryorder")
        .prefetch_related(Prefetch("lines", queryset=lines))
        .filter(pk=order_id)
        .first()
    )
    if order is None:
        return None
    return order_as_dict(order)


def order_as_dict(order: Order) -> dict[str, Any]:
    try:
        address = order.deliveryorder.address  # select_related: no query here
    except DeliveryOrder.DoesNotExist:
        address = None
    return {
        "id": order.pk,
        "status": order.status,
        "customer": order.customer.name,
        "total": str(order.total),
        "address": address,
        "lines": [
            {"dish": line.dish.name, "quantity": line.quantity, "unit_price": str(line.unit_price)}
            for line in order.lines.all()
        ],
    }


@maybe_async
def kitchen_report(top: int = 5, low_stock: int = 10):
    """Return order counts, revenue, best sellers and low-stock dishes (aggregate queries).

    In async mode the five queries run concurrently, each on a pooled connection.
    """
    by_status, totals, deliveries, best, low = yield gather(
        Order.vinyl.values_list("status").annotate(n=Count("pk")).order_by("status"),
        Order.vinyl.aggregate(orders=Count("pk"), revenue=Sum("total")),
        DeliveryOrder.vinyl.count(),
        Dish.vinyl.annotate(sold=Coalesce(Sum("lines__quantity"), 0))
        .order_by("-sold", "name")
        .values_list("name", "sold")[:top],
        Dish.vinyl.filter(stock__lt=low_stock)
        .order_by("stock", "name")
        .values_list("name", "stock"),
    )
    return {
        "orders": totals["orders"],
        "revenue": str(totals["revenue"] or Decimal("0.00")),
        "deliveries": deliveries,
        "by_status": dict(by_status),
        "best_sellers": [list(row) for row in best],
        "low_stock": [list(row) for row in low],
    }


@vinyl.atomic
@maybe_async
def start_cooking(limit: int):
    """Move up to *limit* of the oldest placed orders to "cooking"; return their ids.

    ``@vinyl.atomic`` on a universal operation opens the right block in each mode (``with`` or
    ``async with``); ``skip_locked`` lets several kitchens run it at once.
    """
    orders = yield (
        Order.vinyl.select_for_update(skip_locked=True)
        .filter(status=Order.Status.PLACED)
        .order_by("pk")
        .values_list("pk", flat=True)[:limit]
    )
    if orders:
        yield Order.vinyl.filter(pk__in=orders).update(status=Order.Status.COOKING)
    return list(orders)
