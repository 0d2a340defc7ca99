"""Two copies of the same API: /vinyl/… on vinyl, /django/… on Django's own async methods."""

from collections import Counter

from django.http import JsonResponse
from django.urls import path

import vinyl
from demo import workers
from demo.food import django_views, services, vinyl_views


async def stats(request):
    """Return the on_commit notifications counted by the server's processes, per source, the
    worker processes' pids (with the orders each announced) and the counters of vinyl's query
    cache (of the process that answers)."""
    by_worker = workers.collected(services.KITCHEN_NOTIFIED)
    notified = sum(by_worker.values(), Counter())
    return JsonResponse({
        "notified": dict(notified),
        "workers": {pid: sum(counts.values()) for pid, counts in sorted(by_worker.items())},
        "query_cache": vinyl.query_cache_info(),
    })  # fmt: skip


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
