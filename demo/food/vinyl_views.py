"""Async views on vinyl: real async queries on a pooled connection, async transactions."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse

import vinyl

from . import services


async def dishes(request: HttpRequest) -> JsonResponse:
    menu = await services.list_dishes(request.GET.get("tag"))
    return JsonResponse({"dishes": menu})


async def place_order(request: HttpRequest) -> JsonResponse:
    try:
        data = services.parse_order(request.body)
        async with vinyl.atomic():
            placed = await services.place_order(**data, source="vinyl")
    except services.OrderRejected as exc:
        return JsonResponse({"error": str(exc)}, status=exc.status)
    return JsonResponse(placed, status=201)


async def order(request: HttpRequest, order_id: int) -> JsonResponse:
    found = await services.order_status(order_id)
    if found is None:
        return JsonResponse({"error": f"no order {order_id}"}, status=404)
    return JsonResponse(found)


async def report(request: HttpRequest) -> JsonResponse:
    return JsonResponse(await services.kitchen_report())
