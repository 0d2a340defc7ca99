"""Seed data: a menu, tags and customers (sync code with Django's own ORM)."""

from __future__ import annotations

from decimal import Decimal

from django.db import transaction
from django.db.models import Case, Value, When

from .models import Customer, Dish, Order, Tag

TAGS = ["vegan", "vegetarian", "spicy", "gluten-free", "kids", "special"]
# name, price, tags, stock. The three specials sell out during the load test, so some orders are
# refused (409) and roll back; the rest never run out.
MENU = [
    ("Margherita", "9.50", ["vegetarian", "kids"], 100_000),
    ("Diavola", "11.00", ["spicy"], 100_000),
    ("Quattro formaggi", "12.00", ["vegetarian"], 100_000),
    ("Pad thai", "12.50", ["spicy", "gluten-free"], 100_000),
    ("Green curry", "13.00", ["vegan", "spicy", "gluten-free"], 100_000),
    ("Falafel wrap", "8.00", ["vegan"], 100_000),
    ("Caesar salad", "9.00", [], 100_000),
    ("Cheeseburger", "11.50", ["kids"], 100_000),
    ("Veggie burger", "11.00", ["vegetarian"], 100_000),
    ("Ramen", "13.50", [], 100_000),
    ("Miso soup", "4.50", ["vegan", "gluten-free"], 100_000),
    ("Fish and chips", "14.00", [], 100_000),
    ("Lentil dal", "10.00", ["vegan", "gluten-free", "spicy"], 100_000),
    ("Tiramisu", "6.50", ["vegetarian"], 100_000),
    ("Mango sorbet", "5.00", ["vegan", "gluten-free", "kids"], 100_000),
    ("Truffle risotto", "24.00", ["special", "vegetarian", "gluten-free"], 40),
    ("Lobster roll", "28.00", ["special"], 25),
    ("Wagyu steak", "39.00", ["special", "gluten-free"], 15),
]
CUSTOMERS = 200


@transaction.atomic
def seed() -> None:
    """Fill an empty database with the menu and the customers."""
    if Dish.objects.exists():
        raise RuntimeError("the database is already seeded")
    tags = {t.name: t for t in Tag.objects.bulk_create(Tag(name=name) for name in TAGS)}
    dishes = Dish.objects.bulk_create(
        Dish(name=name, price=Decimal(price), stock=stock) for name, price, _, stock in MENU
    )
    Dish.tags.through.objects.bulk_create(
        Dish.tags.through(dish=dish, tag=tags[tag])
        for dish, (_, _, names, _) in zip(dishes, MENU, strict=True)
        for tag in names
    )
    Customer.objects.bulk_create(
        Customer(name=f"Customer {i}", email=f"customer{i}@example.com")
        for i in range(1, CUSTOMERS + 1)
    )


def restock() -> None:
    """Put every dish back to its seeded stock (one UPDATE)."""
    Dish.objects.update(
        stock=Case(*(When(name=name, then=Value(stock)) for name, _, _, stock in MENU))
    )


def reset_orders() -> None:
    """Delete every order (lines and deliveries cascade) and restock."""
    Order.objects.all().delete()
    restock()
