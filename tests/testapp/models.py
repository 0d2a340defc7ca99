"""The schema vinyl's scenario tests run on."""

from django.db import models

from vinyl import VinylModel


class Author(VinylModel):
    name = models.CharField(max_length=100)
    born = models.DateField(null=True)

    def __str__(self) -> str:
        return self.name


class Tag(VinylModel):
    name = models.CharField(max_length=50, unique=True)


class Book(VinylModel):
    author = models.ForeignKey(Author, on_delete=models.CASCADE, related_name="books")
    editor = models.ForeignKey(
        Author, null=True, on_delete=models.SET_NULL, related_name="edited"
    )
    title = models.CharField(max_length=200)
    pages = models.IntegerField(default=0)
    price = models.DecimalField(max_digits=8, decimal_places=2, default=0)
    published = models.DateTimeField(null=True)
    tags = models.ManyToManyField(Tag, related_name="books")

    class Meta:
        get_latest_by = "published"
