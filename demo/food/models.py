"""The schema: customers order dishes (tagged, with a stock count); an order has lines; a delivery
order is an order with an address (multi-table inheritance)."""

from django.db import models

from vinyl import VinylModel


class Customer(VinylModel):
    name = models.CharField(max_length=100)
    email = models.EmailField(unique=True)

    def __str__(self) -> str:
        return self.name


class Tag(VinylModel):
    name = models.CharField(max_length=30, unique=True)

    def __str__(self) -> str:
        return self.name


class Dish(VinylModel):
    name = models.CharField(max_length=100, unique=True)
    price = models.DecimalField(max_digits=8, decimal_places=2)
    # A plain IntegerField on purpose: no CHECK (stock >= 0) hides an oversold dish, so the demo's
    # correctness check really tests the select_for_update locking.
    stock = models.IntegerField()
    tags = models.ManyToManyField(Tag, related_name="dishes", blank=True)

    class Meta:
        verbose_name_plural = "dishes"

    def __str__(self) -> str:
        return self.name


class Order(VinylModel):
    class Status(models.TextChoices):
        PLACED = "placed"
        COOKING = "cooking"
        READY = "ready"

    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="orders")
    status = models.CharField(max_length=10, choices=Status, default=Status.PLACED)
    total = models.DecimalField(max_digits=10, decimal_places=2, default=0)
    created = models.DateTimeField(auto_now_add=True)
    # Which implementation placed it ("vinyl" or "django"), for the load test's report.
    source = models.CharField(max_length=10)

    def __str__(self) -> str:
        return f"order {self.pk}"


class DeliveryOrder(Order):
    address = models.CharField(max_length=200)


class OrderLine(VinylModel):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    dish = models.ForeignKey(Dish, on_delete=models.PROTECT, related_name="lines")
    quantity = models.PositiveIntegerField()
    unit_price = models.DecimalField(max_digits=8, decimal_places=2)
