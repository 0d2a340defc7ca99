"""``kitchen_report``: the service functions of the async views, run here in sync mode."""

from django.core.management.base import BaseCommand

from demo.food import services


class Command(BaseCommand):
    help = (
        "Print the kitchen's report (orders, revenue, best sellers, low stock); with --cook N, "
        "first move the N oldest placed orders to 'cooking'. Runs vinyl in sync mode."
    )

    def add_arguments(self, parser):
        parser.add_argument("--cook", type=int, default=0, metavar="N")
        parser.add_argument("--top", type=int, default=5)

    def handle(self, *args, cook, top, **options):
        # No event loop runs here, so vinyl is in sync mode: the universal services return values.
        if cook:
            started = services.start_cooking(cook)  # its own transaction (@vinyl.atomic)
            self.stdout.write(f"Started cooking {len(started)} order(s).")
        report = services.kitchen_report(top=top)
        menu = services.list_dishes()
        out = self.stdout.write
        out(f"Orders: {report['orders']} ({report['deliveries']} deliveries), "
            f"revenue {report['revenue']}")  # fmt: skip
        statuses = ", ".join(f"{k} {v}" for k, v in report["by_status"].items()) or "no orders"
        out(f"By status: {statuses}")
        out("Best sellers: " + ", ".join(f"{name} ({n})" for name, n in report["best_sellers"]))
        low = ", ".join(f"{name} ({n})" for name, n in report["low_stock"]) or "none"
        out(f"Low stock: {low}")
        out(f"Menu: {len(menu)} dishes, "
            f"{sum(1 for d in menu if 'vegan' in d['tags'])} vegan")  # fmt: skip
