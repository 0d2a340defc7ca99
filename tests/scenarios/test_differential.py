"""Differential tests: every read gives what Django's own ORM gives for the same queryset.

Each case is ``build(M)``: ``M(Model)`` is ``Model.objects`` for the reference run (Django, sync,
in a fixture) and ``Model.vinyl`` for the run under test (in both modes). ``build`` returns a
queryset (evaluated: ``list(qs)`` / ``yield qs``) or the result of a terminal method.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import operator
from decimal import Decimal

import pytest
from django.db.models import (
    Avg,
    Case,
    CharField,
    Count,
    DecimalField,
    Exists,
    ExpressionWrapper,
    F,
    FilteredRelation,
    IntegerField,
    Max,
    Min,
    OuterRef,
    Q,
    StdDev,
    Subquery,
    Sum,
    Value,
    When,
    Window,
)
from django.db.models.expressions import RawSQL
from django.db.models.functions import (
    Cast,
    Coalesce,
    Concat,
    DenseRank,
    ExtractYear,
    FirstValue,
    Lag,
    Length,
    Lower,
    Rank,
    RowNumber,
    TruncDate,
    TruncMonth,
    Upper,
)
from django.db.models.query import QuerySet, RawQuerySet
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.scenarios.differential import django_manager, norm, seeded_database, vinyl_manager
from tests.testapp.models import (
    AllFields,
    Article,
    Author,
    AuthorProxy,
    Book,
    Chapter,
    Membership,
    Place,
    Profile,
    Restaurant,
    Tag,
)
from vinyl import async_mode, close_pools, sync_mode
from vinyl.connection import capture_queries
from vinyl.testing import both_modes

AMS = dt.timezone(dt.timedelta(hours=5))  # a fixed offset that is not the default zone


def newest_title(M):
    return Subquery(
        M(Book).filter(author=OuterRef("pk")).order_by("-published", "-pk").values("title")[:1]
    )


QUERYSETS = {
    # plain evaluation, ordering
    "all": lambda M: M(Book).order_by("pk"),
    "default_order_authors": lambda M: M(Author).all(),
    "order_desc_multi": lambda M: M(Book).order_by("-price", "title", "pk"),
    "order_across_fk": lambda M: M(Book).order_by("author__name", "-pages"),
    "order_nulls_last": lambda M: M(Book).order_by(F("published").desc(nulls_last=True), "pk"),
    "order_nulls_first": lambda M: M(Book).order_by(F("editor__name").asc(nulls_first=True), "pk"),
    "reverse": lambda M: M(Book).order_by("pages", "pk").reverse(),
    # filter / exclude / Q / F
    "filter_icontains": lambda M: M(Book).filter(title__icontains="zen").order_by("pk"),
    "filter_range": lambda M: M(Book).filter(pages__range=(90, 320)).order_by("pk"),
    "filter_decimal": lambda M: M(Book).filter(price__lt=Decimal("20")).order_by("pk"),
    "filter_year": lambda M: M(Book).filter(published__year=2020).order_by("pk"),
    "filter_date_tz": lambda M: M(Book).filter(published__date=dt.date(2020, 1, 1)),
    "filter_isnull": lambda M: M(Book).filter(published__isnull=True),
    "filter_in_across": lambda M: M(Book).filter(author__name__in=["Ann", "Dan"]).order_by("pk"),
    "filter_regex": lambda M: M(Book).filter(title__regex=r"^[A-P]").order_by("pk"),
    "filter_m2m": lambda M: M(Book).filter(tags__name="python").order_by("pk"),
    "filter_m2m_distinct": lambda M: (
        M(Book).filter(tags__name__in=["python", "sql"]).distinct().order_by("pk")
    ),
    "filter_reverse_fk": lambda M: M(Author).filter(books__pages__gt=300).distinct().order_by("pk"),
    "filter_month": lambda M: M(Author).filter(born__month=1).order_by("pk"),
    "exclude_q_or": lambda M: (
        M(Book).exclude(Q(pages__lt=100) | Q(editor__isnull=True)).order_by("pk")
    ),
    "filter_not_and": lambda M: (
        M(Book).filter(~Q(author__name="Ann") & Q(pages__gt=50)).order_by("pk")
    ),
    "filter_f": lambda M: M(Book).filter(price__gt=F("pages") / 10).order_by("pk"),
    "filter_f_across": lambda M: M(Book).filter(editor=F("author")),
    "filter_empty_in": lambda M: M(Book).filter(pk__in=[]),
    "none": lambda M: M(Book).none(),
    "filter_o2o_reverse": lambda M: M(Author).filter(profile__bio__contains="data"),
    "filter_mti_child": lambda M: M(Place).filter(restaurant__serves_pizza=True),
    # annotate / alias / aggregates per row
    "annotate_count": lambda M: M(Author).annotate(n=Count("books")).order_by("-n", "name"),
    "annotate_sum_avg": lambda M: (
        M(Author)
        .annotate(total=Sum("books__pages"), avg=Avg("books__price"), top=Max("books__published"))
        .order_by("pk")
    ),
    "annotate_count_distinct_filter": lambda M: (
        M(Author)
        .annotate(
            tags=Count("books__tags", distinct=True),
            long=Count("books", filter=Q(books__pages__gt=100)),
        )
        .order_by("pk")
    ),
    "alias_filter": lambda M: M(Author).alias(n=Count("books")).filter(n__gte=2).order_by("pk"),
    "annotate_expressions": lambda M: (
        M(Book)
        .annotate(
            upper=Upper("title"),
            length=Length("title"),
            doubled=F("pages") * 2,
            cost=ExpressionWrapper(F("price") * 2, output_field=DecimalField()),
            label=Concat("title", Value(" / "), "author__name", output_field=CharField()),
            editor_name=Coalesce("editor__name", Value("-")),
            as_text=Cast("pages", CharField()),
            year=ExtractYear("published"),
            month=TruncMonth("published"),
            day=TruncDate("published"),
            size=Case(
                When(pages__gte=300, then=Value("long")),
                When(pages__gte=100, then=Value("medium")),
                default=Value("short"),
            ),
        )
        .order_by("pk")
    ),
    "annotate_then_filter": lambda M: (
        M(Book).annotate(n=Count("tags")).filter(n__gt=1).order_by("pk")
    ),
    # windows
    "window_rank": lambda M: (
        M(Book)
        .annotate(
            rank=Window(Rank(), partition_by=F("author"), order_by=F("pages").desc()),
            row=Window(RowNumber(), order_by=[F("price").asc(), F("pk").asc()]),
            dense=Window(DenseRank(), order_by=F("pages").desc()),
            running=Window(Sum("pages"), order_by=F("pk").asc()),
            previous=Window(Lag("title"), order_by=F("pk").asc()),
            first=Window(FirstValue("title"), partition_by=[F("author")], order_by=F("pk").asc()),
        )
        .order_by("pk")
    ),
    "window_filter": lambda M: (
        M(Book)
        .annotate(rank=Window(Rank(), partition_by=F("author"), order_by=F("pages").desc()))
        .filter(rank=1)
        .order_by("pk")
    ),
    # subqueries
    "subquery_annotate": lambda M: M(Author).annotate(newest=newest_title(M)).order_by("pk"),
    "exists_filter": lambda M: (
        M(Author)
        .filter(Exists(M(Book).filter(author=OuterRef("pk"), pages__gt=300)))
        .order_by("pk")
    ),
    "exists_annotate": lambda M: (
        M(Author).annotate(edits=Exists(M(Book).filter(editor=OuterRef("pk")))).order_by("pk")
    ),
    "in_subquery": lambda M: (
        M(Book).filter(author__in=M(Author).filter(born__year=1970)).order_by("pk")
    ),
    # querysets of both kinds inside one another
    "mixed_django_inner": lambda M: (
        M(Author).filter(pk__in=Book.objects.filter(pages__gt=300).values("author")).order_by("pk")
    ),
    "mixed_vinyl_inner": lambda M: (
        M(Author)
        .annotate(n=Subquery(Book.vinyl.filter(author=OuterRef("pk")).values("pages")[:1]))
        .order_by("pk")
    ),
    "mixed_union": lambda M: (
        M(Book)
        .filter(pk=1)
        .union(Book.objects.filter(pk=2), Book.vinyl.filter(pk=3))
        .order_by("-pk")
    ),
    # distinct
    "distinct_values": lambda M: M(Book).values("author").distinct().order_by("author"),
    "distinct_on": lambda M: M(Book).order_by("author", "-pages").distinct("author"),
    # slicing
    "slice_middle": lambda M: M(Book).order_by("pk")[1:3],
    "slice_open": lambda M: M(Book).order_by("pk")[2:],
    "slice_head": lambda M: M(Book).order_by("pk")[:2],
    "slice_one": lambda M: M(Book).order_by("pk")[4:5],
    "slice_past_end": lambda M: M(Book).order_by("pk")[10:20],
    # values / values_list
    "values_fields": lambda M: M(Book).values("title", "author__name", "price").order_by("pk"),
    "values_all": lambda M: M(Book).values().order_by("pk"),
    "values_annotated": lambda M: (
        M(Book)
        .values("author__name")
        .annotate(n=Count("pk"), pages=Sum("pages"))
        .order_by("author__name")
    ),
    "values_expression": lambda M: M(Book).values("pk", up=Lower("title")).order_by("pk"),
    "values_list": lambda M: M(Book).values_list("title", "pages", "published").order_by("pk"),
    "values_list_flat": lambda M: M(Book).values_list("price", flat=True).order_by("pk"),
    "values_list_named": lambda M: (
        M(Book).values_list("title", "author__born", named=True).order_by("pk")
    ),
    "values_list_m2m": lambda M: (
        M(Book).values_list("pk", "tags__name").order_by("pk", "tags__name")
    ),
    # dates / datetimes (time zone sensitive)
    "dates_month": lambda M: M(Book).dates("published", "month"),
    "dates_year_desc": lambda M: M(Book).dates("published", "year", order="DESC"),
    "dates_day": lambda M: M(Author).dates("born", "day"),
    "datetimes_hour": lambda M: M(Book).datetimes("published", "hour"),
    "datetimes_tzinfo": lambda M: M(Book).datetimes("published", "day", tzinfo=AMS),
    # only / defer
    "only": lambda M: M(Book).only("title").order_by("pk"),
    "defer": lambda M: M(Book).defer("price", "published").order_by("pk"),
    "only_select_related": lambda M: (
        M(Book).only("title", "author__name").select_related("author").order_by("pk")
    ),
    # combinators
    "union": lambda M: (
        M(Book).filter(pages__lt=100).union(M(Book).filter(pages__gt=400)).order_by("title", "pk")
    ),
    "union_all_values_list": lambda M: (
        M(Book)
        .values_list("title", flat=True)
        .union(M(Book).values_list("title", flat=True), all=True)
        .order_by("title")
    ),
    "union_sliced": lambda M: (
        M(Author).values_list("name").union(M(Tag).values_list("name")).order_by("-name")[:3]
    ),
    "intersection": lambda M: (
        M(Book).filter(pages__lt=200).intersection(M(Book).filter(price__lt=10)).order_by("pk")
    ),
    "difference": lambda M: M(Book).difference(M(Book).filter(editor__isnull=True)).order_by("pk"),
    # select_related
    "select_related_fk": lambda M: M(Book).select_related("author").order_by("pk"),
    "select_related_nullable": lambda M: M(Book).select_related("editor").order_by("pk"),
    "select_related_nested": lambda M: (
        M(Chapter).select_related("book__author", "book__editor__profile").order_by("pk")
    ),
    "select_related_reverse_o2o": lambda M: M(Author).select_related("profile").order_by("pk"),
    "select_related_mti": lambda M: M(Place).select_related("restaurant").order_by("pk"),
    "select_related_o2o": lambda M: M(Profile).select_related("author").order_by("pk"),
    # inheritance, proxy, custom manager
    "mti_child": lambda M: M(Restaurant).order_by("pk"),
    "mti_parent": lambda M: M(Place).order_by("pk"),
    "mti_filter_parent_field": lambda M: M(Restaurant).filter(city="Amsterdam"),
    "proxy": lambda M: M(AuthorProxy).order_by("pk"),
    "custom_queryset_method": lambda M: M(Article).published().order_by("pk"),
    "custom_queryset_chain": lambda M: M(Article).filter(author__isnull=False).published(),
    "mti_values": lambda M: M(Restaurant).values("name", "city", "rating").order_by("pk"),
    "mti_defer_parent_field": lambda M: M(Restaurant).defer("city").order_by("pk"),
    "meta_ordering": lambda M: M(Article).all(),
    "meta_ordering_values": lambda M: M(Article).values_list("headline", flat=True),
    # composite primary key
    "composite_pk": lambda M: M(Membership).order_by("pk"),
    "composite_pk_select_related": lambda M: (
        M(Membership)
        .select_related("tag", "book")
        .filter(book__pages__gt=100)
        .order_by("tag", "book")
    ),
    "composite_pk_values": lambda M: M(Membership).values("pk", "role").order_by("pk"),
    # extra(), RawSQL, FilteredRelation, another alias
    "extra_select": lambda M: (
        M(Book)
        .extra(select={"double": "pages * 2"}, where=["pages > %s"], params=[50])
        .order_by("pk")
    ),
    "extra_order_by": lambda M: M(Book).extra(select={"t": "lower(title)"}, order_by=["-t", "id"]),
    "rawsql_annotation": lambda M: (
        M(Book)
        .annotate(rounded=RawSQL("round(price)", (), output_field=DecimalField()))
        .order_by("pk")
    ),
    "filtered_relation": lambda M: (
        M(Author)
        .annotate(long_books=FilteredRelation("books", condition=Q(books__pages__gt=100)))
        .filter(long_books__isnull=False)
        .values_list("name", "long_books__title")
        .order_by("name", "long_books__title")
    ),
    "using_other_alias": lambda M: (
        M(Book).using("serializable").filter(pages__gt=100).order_by("pk")
    ),
    "none_values": lambda M: M(Book).none().values("title"),
    "none_union": lambda M: M(Book).none().union(M(Book).filter(pk=1)),
    # every field type
    "all_fields": lambda M: M(AllFields).order_by("pk"),
    "all_fields_values": lambda M: M(AllFields).values().order_by("pk"),
    "all_fields_values_list": lambda M: (
        M(AllFields)
        .values_list("decimal", "moment", "clock", "duration", "blob", "data", "int_range", "uuid")
        .order_by("pk")
    ),
    "array_contains": lambda M: M(AllFields).filter(numbers__contains=[1]),
    "array_index": lambda M: M(AllFields).values_list("numbers__0", flat=True).order_by("pk"),
    "range_contains": lambda M: M(AllFields).filter(int_range__contains=4).order_by("pk"),
    "json_key": lambda M: M(AllFields).filter(data__key="value"),
    "json_contains": lambda M: M(AllFields).filter(data__contains={"t": True}),
    "json_values": lambda M: (
        M(AllFields).values_list("data__n", "data__f", flat=False).order_by("pk")
    ),
    "json_isnull": lambda M: M(AllFields).filter(data__isnull=True),
    "ip_filter": lambda M: M(AllFields).filter(ip="10.0.0.1"),
    "duration_filter": lambda M: M(AllFields).filter(duration__gt=dt.timedelta(days=1)),
    "bool_null_filter": lambda M: M(AllFields).filter(flag__isnull=True),
    # raw SQL
    "raw": lambda M: M(Book).raw("SELECT * FROM testapp_book ORDER BY id"),
    "raw_params": lambda M: M(Book).raw(
        "SELECT id, title, pages FROM testapp_book WHERE pages > %s ORDER BY id", [100]
    ),
    "raw_translations_annotation": lambda M: M(Author).raw(
        "SELECT id, name AS n, upper(name) AS shout FROM testapp_author ORDER BY id",
        translations={"n": "name"},
    ),
    "raw_dict_params": lambda M: M(Book).raw(
        "SELECT * FROM testapp_book WHERE title = %(t)s ORDER BY id", {"t": "Zen"}
    ),
    "raw_all_fields": lambda M: M(AllFields).raw("SELECT * FROM testapp_allfields ORDER BY id"),
    "raw_mti": lambda M: M(Restaurant).raw(
        "SELECT * FROM testapp_restaurant r JOIN testapp_place p ON p.id = r.place_ptr_id "
        "ORDER BY p.id"
    ),
    "raw_percent_escaped": lambda M: M(Book).raw(
        "SELECT * FROM testapp_book WHERE title LIKE 'Z%%' AND pages > %s ORDER BY id", [20]
    ),
    "raw_no_params": lambda M: M(Book).raw(
        "SELECT * FROM testapp_book WHERE title LIKE 'P%' ORDER BY id", params=None
    ),
    # database errors: Django's exception classes, same messages
    "error_programming": lambda M: M(Book).extra(where=["no_such_column = 1"]),
    "error_data": lambda M: M(Book).raw("SELECT 1 / (count(*) - count(*)) AS id FROM testapp_book"),
    "error_cast": lambda M: M(Book).annotate(n=Cast(Value("x"), IntegerField())),
    "raw_prefetch": lambda M: (
        M(Book)
        .raw("SELECT * FROM testapp_book ORDER BY id DESC")
        .prefetch_related("tags", "author__books", "chapters")
    ),
    "raw_from_queryset": lambda M: (
        M(Book).filter(pages__gt=1000).raw("SELECT * FROM testapp_book WHERE id < 3 ORDER BY id")
    ),
}

TERMINALS = {
    "get_pk": lambda M: M(Book).get(pk=2),
    "get_filter": lambda M: M(Book).get(title="Zen", author__name="Cat"),
    "get_select_related": lambda M: M(Book).select_related("author", "editor").get(pk=3),
    "get_values": lambda M: M(Book).values("title", "pages").get(pk=1),
    "get_does_not_exist": lambda M: M(Book).get(pk=999),
    "get_multiple": lambda M: M(Book).get(author__name="Ann"),
    "get_multiple_many": lambda M: M(Book).get(pages__gt=0),
    "get_union": lambda M: M(Book).filter(pk=1).union(M(Book).filter(pk=1)).get(),
    "get_proxy": lambda M: M(AuthorProxy).get(name="Bob"),
    "get_mti": lambda M: M(Restaurant).get(name="Luigi"),
    "get_composite_pk": lambda M: M(Membership).get(pk=(3, 1)),
    "in_bulk_composite_pk": lambda M: M(Membership).in_bulk([(1, 1), (3, 4)]),
    "get_using_other_alias": lambda M: M(Book).using("serializable").get(pk=1),
    "first_meta_ordering": lambda M: M(Article).first(),
    "last_meta_ordering": lambda M: M(Article).last(),
    # Django 6.1 keeps a cleared ordering (no pk added to the GROUP BY: n == 2); 5.2 orders by pk.
    "first_cleared_ordering": lambda M: (
        M(Book).filter(title="Zen").values("title").annotate(n=Count("pk")).order_by().first()
    ),
    "last_cleared_ordering": lambda M: (
        M(Book).filter(title="Zen").values("title").annotate(n=Count("pk")).order_by().last()
    ),
    "get_select_for_update_outside_transaction": lambda M: M(Book).select_for_update().get(pk=1),
    "first_unordered": lambda M: M(Book).first(),
    "first_ordered": lambda M: M(Book).order_by("-pages", "pk").first(),
    "first_empty": lambda M: M(Book).filter(pk=999).first(),
    "first_values_list": lambda M: (
        M(Book).values_list("title", flat=True).order_by("title").first()
    ),
    "first_annotated": lambda M: M(Author).annotate(n=Count("books")).order_by("-n", "pk").first(),
    "last_unordered": lambda M: M(Book).last(),
    "last_ordered": lambda M: M(Book).order_by("title", "pk").last(),
    "last_values": lambda M: M(Book).values("title").order_by("pk").last(),
    "earliest": lambda M: M(Book).earliest("published"),
    "earliest_multi": lambda M: M(Book).earliest("-pages", "title"),
    "latest_meta": lambda M: M(Book).filter(published__isnull=False).latest(),
    "latest_empty": lambda M: M(Book).filter(pk=999).latest("pages"),
    "count": lambda M: M(Book).count(),
    "count_filter": lambda M: M(Book).filter(tags__name="python").count(),
    "count_distinct": lambda M: M(Book).filter(tags__name__in=["python", "sql"]).distinct().count(),
    "count_slice": lambda M: M(Book).order_by("pk")[1:4].count(),
    "count_union": lambda M: M(Book).filter(pk=1).union(M(Book).filter(pk__lt=3)).count(),
    "count_values_annotate": lambda M: M(Book).values("author").annotate(n=Count("pk")).count(),
    "count_none": lambda M: M(Book).none().count(),
    "exists_true": lambda M: M(Book).filter(pages__gt=400).exists(),
    "exists_false": lambda M: M(Book).filter(pages__gt=4000).exists(),
    "exists_slice": lambda M: M(Book).order_by("pk")[10:].exists(),
    "exists_union": lambda M: M(Book).filter(pk=1).union(M(Book).filter(pk=2)).exists(),
    "exists_none": lambda M: M(Book).none().exists(),
    "contains_true": lambda M: M(Book).filter(pages__gt=100).contains(Book(pk=1)),
    "contains_false": lambda M: M(Book).filter(pages__gt=100).contains(Book(pk=4)),
    "aggregate": lambda M: M(Book).aggregate(
        total=Sum("pages"),
        avg=Avg("price"),
        most=Max("published"),
        least=Min("title"),
        authors=Count("author", distinct=True),
        spread=StdDev("pages"),
    ),
    "aggregate_empty": lambda M: (
        M(Book)
        .filter(pk=999)
        .aggregate(total=Sum("pages"), n=Count("pk"), d=Sum("pages", default=0))
    ),
    "aggregate_over_annotation": lambda M: (
        M(Author).annotate(n=Count("books")).aggregate(most=Max("n"), avg=Avg("n"))
    ),
    "aggregate_sliced": lambda M: M(Book).order_by("-pages")[:3].aggregate(total=Sum("pages")),
    "aggregate_all_fields": lambda M: M(AllFields).aggregate(
        Max("decimal"), Min("moment"), Sum("duration"), Avg("floating")
    ),
    "aggregate_none": lambda M: M(Book).none().aggregate(n=Count("pk"), s=Sum("pages")),
    "in_bulk_none": lambda M: M(Book).none().in_bulk([1]),
    "first_none": lambda M: M(Book).none().first(),
    "in_bulk_all": lambda M: M(Book).in_bulk(),
    "in_bulk_ids": lambda M: M(Book).in_bulk([1, 3, 999]),
    "in_bulk_field": lambda M: M(Tag).in_bulk(["sql", "python"], field_name="name"),
    "in_bulk_empty": lambda M: M(Book).in_bulk([]),
    "in_bulk_values": lambda M: M(Book).values("title").in_bulk([2]),
    "explain": lambda M: M(Book).filter(pages__gt=100).explain(),
    "explain_json": lambda M: M(Book).filter(pk=1).explain(format="json", costs=False),
}


@pytest.fixture(scope="module")
def seeded(django_db_setup):
    """The tests of this module only read: seed once."""
    yield from seeded_database()


def evaluate_django(build):
    result = build(django_manager)
    if isinstance(result, (QuerySet, RawQuerySet)):
        result = list(result)
    return result


@pytest.fixture
def expected(seeded, case):
    """Django's own result for the case (or the exception it raises), computed in sync code."""
    build = QUERYSETS.get(case) or TERMINALS[case]
    try:
        return norm(evaluate_django(build))
    except Exception as exc:  # the vinyl run must raise the same error
        return norm(exc)


@pytest.mark.parametrize("case", [*QUERYSETS, *TERMINALS])
@both_modes
def test_same_result_as_django(case, expected, vinyl_mode):
    build = QUERYSETS.get(case) or TERMINALS[case]
    try:
        value = build(vinyl_manager)
        if not isinstance(value, (QuerySet, RawQuerySet)):
            # A terminal method: an awaitable in async mode, the value itself in sync mode.
            assert inspect.isawaitable(value) == (vinyl_mode == "async"), value
        result = yield value
    except Exception as exc:
        result = exc
    assert norm(result) == expected


@pytest.mark.parametrize("case", [c for c in QUERYSETS if not c.startswith("error_")])
@both_modes
def test_evaluation_fills_the_cache(case, seeded):
    qs = QUERYSETS[case](vinyl_manager)
    with capture_queries() as queries:
        first = yield qs
        n = len(queries)
        second = yield qs
    assert n == 5 if "prefetch" in case else n <= 1  # raw, then one query per prefetch level
    assert len(queries) == n  # the second evaluation reads the result cache
    assert norm(second) == norm(first)
    assert isinstance(first, list)


# -- generated filters (hypothesis): Django, vinyl sync and vinyl async agree -------------------

NAMES = ["Ann", "Bob", "Cat", "Dan", "Eve"]
LEAVES = st.one_of(
    st.builds(lambda v: Q(pages__gt=v), st.integers(0, 600)),
    st.builds(lambda v: Q(price__lte=v), st.decimals(0, 100, places=2, allow_nan=False)),
    st.builds(lambda v: Q(title__icontains=v), st.sampled_from(["z", "a", "SQL", "o", "", "%"])),
    st.builds(lambda v: Q(author__name=v), st.sampled_from(NAMES)),
    st.builds(lambda v: Q(editor__name__in=v), st.lists(st.sampled_from(NAMES), max_size=3)),
    st.builds(lambda v: Q(editor__isnull=v), st.booleans()),
    st.builds(lambda v: Q(published__year=v), st.integers(2018, 2022)),
    st.builds(
        lambda v: Q(published__gte=v),
        st.datetimes(
            min_value=dt.datetime(2019, 6, 1),
            max_value=dt.datetime(2022, 1, 1),
            timezones=st.sampled_from([dt.UTC, AMS]),
        ),
    ),
    st.builds(lambda v: Q(published__date=v), st.dates(dt.date(2019, 12, 30), dt.date(2020, 1, 2))),
    st.builds(lambda v: Q(author__born__lt=v), st.dates(dt.date(1969, 1, 1), dt.date(1990, 1, 1))),
    st.builds(lambda v: Q(tags__name=v), st.sampled_from(["python", "django", "sql", "x"])),
    st.just(Q(pages__lt=F("price") * 10)),
    st.just(Q(editor=F("author"))),
)
FILTERS = st.recursive(
    LEAVES,
    lambda children: st.one_of(
        st.builds(operator.and_, children, children),
        st.builds(operator.or_, children, children),
        st.builds(operator.invert, children),
    ),
    max_leaves=5,
)


ORDER_FIELDS = ["-pk", "title", "-price", "pages", "-published", "author__name", "-editor__born"]
SHAPES = st.fixed_dictionaries(
    {
        "exclude": st.booleans(),
        "distinct": st.booleans(),
        "order": st.lists(st.sampled_from(ORDER_FIELDS), max_size=3, unique=True),
        "window": st.one_of(st.none(), st.tuples(st.integers(0, 4), st.integers(0, 6))),
        "shape": st.sampled_from(["values_list", "values", "models"]),
    }
)


def generated(M, q, shape):
    qs = M(Book).exclude(q) if shape["exclude"] else M(Book).filter(q)
    if shape["distinct"]:
        qs = qs.distinct()
    qs = qs.order_by(*shape["order"], "pk")
    if shape["window"] is not None:
        start, length = shape["window"]
        qs = qs[start : start + length]
    if shape["shape"] == "values_list":
        return qs.values_list("pk", "title", "price")
    if shape["shape"] == "values":
        return qs.values("pk", "published", "author__name")
    return qs


def test_generated_filters(seeded):
    """Random filters, orderings and slices give Django's rows and count() in both modes."""
    runner = asyncio.Runner()

    async def in_async_mode(q, shape):
        with async_mode():
            return await generated(vinyl_manager, q, shape), await generated(
                vinyl_manager, q, shape
            ).count()

    @settings(
        max_examples=200,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],  # the data is read-only
    )
    @given(FILTERS, SHAPES)
    def check(q, shape):
        django_qs = generated(django_manager, q, shape)
        expected = norm((list(django_qs), django_qs.count()))
        with sync_mode():
            in_sync = norm(
                (
                    list(generated(vinyl_manager, q, shape)),
                    generated(vinyl_manager, q, shape).count(),
                )
            )
        assert in_sync == expected
        assert norm(runner.run(in_async_mode(q, shape))) == expected

    try:
        check()
    finally:
        runner.run(close_pools())
        runner.close()
