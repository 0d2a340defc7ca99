"""Two copies of the same API: /vinyl/… on vinyl, /django/… on Django's own async methods."""

from django.http import JsonResponse
from django.urls import path

import vinyl
from demo.food import django_views, services, vinyl_views


async def stats(request):
    """Return the on_commit notifications counted in this server process, per source, and the
    counters of vinyl's query cache."""
    return JsonResponse(
        {"notified": dict(services.KITCHEN_NOTIFIED), "query_cache": vinyl.query_cache_info()}
    )


def _api(views, prefix):
    return [
        path(f"{prefix}/dishes", views.dishes, name=f"{prefix}-dishes"),
        path(f"{prefix}/orders", views.place_order, name=f"{prefix}-place-order"),
        path(f"{prefix}/orders/<int:order_id>", views.order, name=f"{prefix}-order"),
        path(f"{prefix}/report", views.report, name=f"{prefix}-report"),
    ]


urlpatterns = [
    *_api(vinyl_views, "vinyl"),
    *_api(django_views, "django"),
    path("stats", stats),
]
