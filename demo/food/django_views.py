"""The same views written with Django's own async API, for comparison.

Reads use the ``a``-methods (``afirst``, ``acount``, ``aaggregate``, ``async for``), which run the
sync ORM in a worker thread. Django has no async transaction, so placing an order runs a
``transaction.atomic``-wrapped sync function through ``sync_to_async`` — the way Django's docs
recommend.
"""

from __future__ import annotations

from decimal import Decimal

from asgiref.sync import sync_to_async
from django.db import models, transaction
from django.db.models import Count, Prefetch, Sum
from django.db.models.functions import Coalesce
from django.http import HttpRequest, JsonResponse

from . import services
from .models import Customer, DeliveryOrder, Dish, Order, OrderLine, Tag


async def dishes(request: HttpRequest) -> JsonResponse:
    # Tag.objects, not the default manager: VinylModel's default manager is `vinyl`, and these
    # views must run Django's code only.
    menu = Dish.objects.prefetch_related(Prefetch("tags", Tag.objects.all())).order_by("name")
    if tag := request.GET.get("tag"):
        menu = menu.filter(tags__name=tag)
    return JsonResponse({"dishes": [services.dish_as_dict(dish) async for dish in menu]})


@transaction.atomic
def _place_order(customer: int, items: dict[int, int], address: str) -> dict:
    try:
        buyer = Customer.objects.get(pk=customer)
    except Customer.DoesNotExist:
        raise services.OrderRejected(f"no customer {customer}") from None
    dishes = list(Dish.objects.select_for_update().filter(pk__in=items).order_by("pk"))
    if len(dishes) != len(items):
        missing = set(items) - {dish.pk for dish in dishes}
        raise services.OrderRejected(f"no dish {sorted(missing)}")
    for dish in dishes:
        if dish.stock < items[dish.pk]:
            raise services.OutOfStock(f"{dish.name}: {items[dish.pk]} wanted, {dish.stock} left")
    total = sum((dish.price * items[dish.pk] for dish in dishes), Decimal(0))
    fields = {"customer": buyer, "total": total, "source": "django"}
    order = DeliveryOrder(address=address, **fields) if address else Order(**fields)
    # Django's own Model.save: VinylModel.save is vinyl's (it follows the mode), and
    # Order.objects.create() would call it.
    models.Model.save(order, force_insert=True)
    OrderLine.objects.bulk_create(
        OrderLine(order=order, dish=dish, quantity=items[dish.pk], unit_price=dish.price)
        for dish in dishes
    )
    for dish in dishes:
        Dish.objects.filter(pk=dish.pk).update(stock=dish.stock - items[dish.pk])
    transaction.on_commit(lambda: services.notify_kitchen(order.pk, "django"))
    return {"id": order.pk, "total": str(total), "delivery": bool(address)}


async def place_order(request: HttpRequest) -> JsonResponse:
    try:
        data = services.parse_order(request.body)
        data["items"] = services.validate_items(data["items"])
        placed = await sync_to_async(_place_order)(**data)
    except services.OrderRejected as exc:
        return JsonResponse({"error": str(exc)}, status=exc.status)
    return JsonResponse(placed, status=201)


async def order(request: HttpRequest, order_id: int) -> JsonResponse:
    lines = OrderLine.objects.select_related("dish").order_by("pk")
    found = (
        await Order.objects.select_related("customer", "deliveryorder")
        .prefetch_related(Prefetch("lines", queryset=lines))
        .filter(pk=order_id)
        .afirst()
    )
    if found is None:
        return JsonResponse({"error": f"no order {order_id}"}, status=404)
    return JsonResponse(services.order_as_dict(found))


async def report(request: HttpRequest) -> JsonResponse:
    by_status = [row async for row in
                 Order.objects.values_list("status").annotate(n=Count("pk")).order_by("status")]  # fmt: skip
    totals = await Order.objects.aaggregate(orders=Count("pk"), revenue=Sum("total"))
    deliveries = await DeliveryOrder.objects.acount()
    best = [row async for row in
            Dish.objects.annotate(sold=Coalesce(Sum("lines__quantity"), 0))
            .order_by("-sold", "name").values_list("name", "sold")[:5]]  # fmt: skip
    low = [row async for row in
           Dish.objects.filter(stock__lt=10).order_by("stock", "name").values_list("name", "stock")]  # fmt: skip
    return JsonResponse({
        "orders": totals["orders"],
        "revenue": str(totals["revenue"] or Decimal("0.00")),
        "deliveries": deliveries,
        "by_status": dict(by_status),
        "best_sellers": [list(row) for row in best],
        "low_stock": [list(row) for row in low],
    })  # fmt: skip
