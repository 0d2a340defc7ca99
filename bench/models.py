"""The benchmark's schema: 100 authors with 100 books each (the ``bench`` app)."""

from django.db import models

from vinyl import VinylModel


class Author(VinylModel):
    name = models.CharField(max_length=100)
    born = models.DateField()

    class Meta:
        app_label = "bench"


class Book(VinylModel):
    author = models.ForeignKey(Author, on_delete=models.CASCADE, related_name="books")
    title = models.CharField(max_length=200)
    pages = models.IntegerField()
    price = models.DecimalField(max_digits=8, decimal_places=2)
    published = models.DateTimeField()

    class Meta:
        app_label = "bench"
