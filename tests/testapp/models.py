"""The schema vinyl's scenario tests run on."""

import threading

from django.contrib.postgres.fields import (
    ArrayField,
    DateTimeRangeField,
    DecimalRangeField,
    IntegerRangeField,
)
from django.db import models
from django.db.models.query import QuerySet

from vinyl import VinylManager, VinylModel, VinylQuerySet, is_async


class Author(VinylModel):
    name = models.CharField(max_length=100)
    born = models.DateField(null=True)

    def __str__(self) -> str:
        return self.name


class Tag(VinylModel):
    name = models.CharField(max_length=50, unique=True)


class Book(VinylModel):
    author = models.ForeignKey(Author, on_delete=models.CASCADE, related_name="books")
    editor = models.ForeignKey(Author, null=True, on_delete=models.SET_NULL, related_name="edited")
    title = models.CharField(max_length=200)
    pages = models.IntegerField(default=0)
    price = models.DecimalField(max_digits=8, decimal_places=2, default=0)
    published = models.DateTimeField(null=True)
    tags = models.ManyToManyField(Tag, related_name="books")

    class Meta:
        get_latest_by = "published"


# -- every field type Django ships for PostgreSQL (issue 3) ------------------------------------


class AllFields(VinylModel):
    """One column of each field type, so reads can be compared value by value and type by type."""

    big = models.BigIntegerField(default=0)
    small = models.SmallIntegerField(default=0)
    positive = models.PositiveIntegerField(default=0)
    positive_big = models.PositiveBigIntegerField(default=0)
    positive_small = models.PositiveSmallIntegerField(default=0)
    floating = models.FloatField(default=0.0)
    decimal = models.DecimalField(max_digits=12, decimal_places=4, default=0)
    flag = models.BooleanField(null=True)
    char = models.CharField(max_length=100, blank=True)
    text = models.TextField(blank=True)
    slug = models.SlugField(blank=True)
    email = models.EmailField(blank=True)
    url = models.URLField(blank=True)
    ip = models.GenericIPAddressField(null=True)
    uuid = models.UUIDField(null=True)
    day = models.DateField(null=True)
    clock = models.TimeField(null=True)
    moment = models.DateTimeField(null=True)
    duration = models.DurationField(null=True)
    blob = models.BinaryField(null=True)
    data = models.JSONField(null=True)
    numbers = ArrayField(models.IntegerField(), default=list)
    words = ArrayField(models.CharField(max_length=20), null=True)
    int_range = IntegerRangeField(null=True)
    moment_range = DateTimeRangeField(null=True)
    decimal_range = DecimalRangeField(null=True)
    generated = models.GeneratedField(
        expression=models.F("big") + models.F("small"),
        output_field=models.BigIntegerField(),
        db_persist=True,
    )


class Membership(VinylModel):
    """A composite primary key (Django >= 5.2)."""

    pk = models.CompositePrimaryKey("tag_id", "book_id")
    tag = models.ForeignKey(Tag, on_delete=models.CASCADE)
    book = models.ForeignKey(Book, on_delete=models.CASCADE)
    role = models.CharField(max_length=20, blank=True)


# -- relations: O2O, multi-table inheritance, proxy, nested FKs --------------------------------


class Profile(VinylModel):
    author = models.OneToOneField(Author, on_delete=models.CASCADE, related_name="profile")
    bio = models.TextField(blank=True)


class Chapter(VinylModel):
    book = models.ForeignKey(Book, on_delete=models.CASCADE, related_name="chapters")
    number = models.IntegerField()
    title = models.CharField(max_length=200)


class Place(VinylModel):
    name = models.CharField(max_length=100)
    city = models.CharField(max_length=100, blank=True)


class Restaurant(Place):
    """Multi-table inheritance: a row in Place and one in Restaurant (parent link place_ptr)."""

    serves_pizza = models.BooleanField(default=False)
    rating = models.IntegerField(null=True)


class AuthorProxy(Author):
    """A proxy of Author: same table, its own Python class."""

    class Meta:
        proxy = True

    def shout(self) -> str:
        return self.name.upper()


# -- a custom manager with a custom queryset method --------------------------------------------


class ArticleQueries:
    """Queryset methods shared by Article's Django manager and its vinyl manager."""

    def published(self):
        return self.filter(is_published=True)


class ArticleQuerySet(ArticleQueries, VinylQuerySet):
    pass


class ArticleManager(VinylManager.from_queryset(ArticleQuerySet)):
    def by_headline(self, prefix: str):
        return self.get_queryset().published().filter(headline__startswith=prefix)


class Article(VinylModel):
    headline = models.CharField(max_length=100)
    is_published = models.BooleanField(default=False)
    author = models.ForeignKey(Author, null=True, on_delete=models.CASCADE, related_name="articles")

    vinyl = ArticleManager()
    objects = models.Manager.from_queryset(
        type("DjangoArticleQuerySet", (ArticleQueries, QuerySet), {})
    )()

    class Meta:
        ordering = ["headline"]


# -- a generic relation (contenttypes): obj.q and prefetch_related through a GenericForeignKey --


from django.contrib.contenttypes.fields import GenericForeignKey, GenericRelation  # noqa: E402


class Note(VinylModel):
    """A note on any object (GenericForeignKey), e.g. on a Book or a Shelf."""

    # No database constraint: testapp has no migrations, so its tables are created before
    # contenttypes' migrations create django_content_type.
    content_type = models.ForeignKey(
        "contenttypes.ContentType", on_delete=models.CASCADE, db_constraint=False
    )
    object_id = models.BigIntegerField()
    content_object = GenericForeignKey("content_type", "object_id")
    text = models.CharField(max_length=100)


class Shelf(VinylModel):
    """The other side of a generic relation (GenericRelation)."""

    name = models.CharField(max_length=100)
    notes = GenericRelation(Note)


# -- writes (issue 4): defaults, generated columns, on_delete variants, multi-table inheritance --


class WStamp(VinylModel):
    """auto_now(_add), db_default, a GeneratedField, a unique and a check constraint."""

    name = models.CharField(max_length=50, unique=True)
    created = models.DateTimeField(auto_now_add=True)
    modified = models.DateTimeField(auto_now=True)
    counter = models.IntegerField(db_default=7)
    doubled = models.GeneratedField(
        expression=models.F("counter") * 2, output_field=models.IntegerField(), db_persist=True
    )
    score = models.IntegerField(default=0)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(score__gte=0), name="wstamp_score_gte_0")
        ]


class WTarget(VinylModel):
    name = models.CharField(max_length=50)


class WRef(VinylModel):
    """One foreign key per on_delete behaviour, all to WTarget."""

    name = models.CharField(max_length=50)
    protect = models.ForeignKey(WTarget, models.PROTECT, null=True, related_name="protected_refs")
    restrict = models.ForeignKey(
        WTarget, models.RESTRICT, null=True, related_name="restricted_refs"
    )
    set_null = models.ForeignKey(WTarget, models.SET_NULL, null=True, related_name="null_refs")
    set_default = models.ForeignKey(
        WTarget, models.SET_DEFAULT, null=True, default=None, related_name="default_refs"
    )
    set_value = models.ForeignKey(WTarget, models.SET(None), null=True, related_name="set_refs")
    do_nothing = models.ForeignKey(
        WTarget, models.DO_NOTHING, null=True, db_constraint=False, related_name="ignored_refs"
    )
    cascade = models.ForeignKey(WTarget, models.CASCADE, null=True, related_name="cascade_refs")


class WParent(VinylModel):
    name = models.CharField(max_length=50)
    touched = models.DateTimeField(auto_now=True)


class WChild(WParent):
    """Multi-table inheritance (wparent_ptr)."""

    extra = models.IntegerField(default=0)


class WGrandChild(WChild):
    level = models.IntegerField(default=3)


class WLeaf(VinylModel):
    """Cascades from a multi-table child."""

    owner = models.ForeignKey(WChild, models.CASCADE, related_name="leaves")
    label = models.CharField(max_length=50, blank=True)


class WSelective(VinylModel):
    """Meta.select_on_save: save() checks the row exists before its UPDATE."""

    name = models.CharField(max_length=50)

    class Meta:
        select_on_save = True


class WGroup(VinylModel):
    """A many-to-many through a model of its own (through_defaults)."""

    name = models.CharField(max_length=50)
    members = models.ManyToManyField(Author, through="WMembership", related_name="wgroups")


class WMembership(VinylModel):
    group = models.ForeignKey(WGroup, models.CASCADE)
    author = models.ForeignKey(Author, models.CASCADE)
    role = models.CharField(max_length=20, default="member")


class WOrdered(VinylModel):
    """Meta.order_with_respect_to: save() and bulk_create() compute _order with a query."""

    group = models.ForeignKey(WGroup, models.CASCADE, related_name="ordered")
    name = models.CharField(max_length=50)

    class Meta:
        order_with_respect_to = "group"


class WSlugged(VinylModel):
    """An overridden save(), the way a universal one is written: it returns super().save()."""

    title = models.CharField(max_length=50)
    slug = models.CharField(max_length=50, blank=True)

    def save(self, *args, **kwargs):
        self.slug = self.title.lower().replace(" ", "-")
        return super().save(*args, **kwargs)


# -- plain Django models with a VinylManager, whose save chain is customised (issue 11) ----------


class ShoutingNote(models.Model):
    """A plain model whose save() override changes what is saved."""

    text = models.CharField(max_length=100)
    objects = models.Manager()
    vinyl = VinylManager()

    def save(self, *args, **kwargs):
        self.text = self.text.upper()
        super().save(*args, **kwargs)


SAVE_LOG: list[tuple] = []


class SyncSavedNote(VinylModel):
    """A VinylModel whose save() override is synchronous code, written as Django's own (auth's
    AbstractBaseUser): super().save() without return, then work that needs the saved row."""

    text = models.CharField(max_length=100, unique=True)

    def save(self, *args, **kwargs):
        self.text = self.text.strip()
        super().save(*args, **kwargs)
        SAVE_LOG.append(
            (
                "sync override",
                self.text,
                self.pk is not None,
                is_async(),
                SyncSavedNote.vinyl.filter(pk=self.pk).count(),  # vinyl's API
                ShoutingNote.objects.count(),  # Django's own ORM
            )
        )


class ReturningNote(VinylModel):
    """A VinylModel whose save() override returns super().save(), as vinyl's guide writes it."""

    text = models.CharField(max_length=100)

    def save(self, *args, **kwargs):
        SAVE_LOG.append(("returning override", threading.current_thread().name))
        return super().save(*args, **kwargs)


INSERT_CALLS: list[str] = []


class AuditedQuerySet(QuerySet):
    def _insert(self, objs, fields, *args, **kwargs):
        INSERT_CALLS.extend(obj.text for obj in objs)
        return super()._insert(objs, fields, *args, **kwargs)


class AuditedNote(VinylModel):
    """A VinylModel whose base manager's _insert() is overridden."""

    text = models.CharField(max_length=100)
    audited = models.Manager.from_queryset(AuditedQuerySet)()

    class Meta:
        base_manager_name = "audited"


# -- user code inside Django functions vinyl runs in async mode (issue 11, item 6) ---------------

SET_CALLS: list[int] = []


def counted_none():
    """An on_delete=SET() callable that counts its calls."""
    SET_CALLS.append(1)


class CTarget(VinylModel):
    name = models.CharField(max_length=50)


class CRef(VinylModel):
    set_by_callable = models.ForeignKey(
        CTarget, models.SET(counted_none), null=True, related_name="set_refs"
    )
    cascade = models.ForeignKey(CTarget, models.CASCADE, null=True, related_name="cascade_refs")
