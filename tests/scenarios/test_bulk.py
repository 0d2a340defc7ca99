"""Queryset writes in both modes: create, get_or_create, update_or_create, update, bulk_create,
bulk_update; query counts and a differential check against Django's own implementation.
"""

from __future__ import annotations

import pytest
from django.db import IntegrityError, NotSupportedError, models
from django.db.models import F, signals

import vinyl
from tests.helpers import (
    assert_same_as_django,
    django_state,
    reset_tables,
    run_with_django,
    statements,
    vinyl_state,
)
from tests.testapp.models import (
    Author,
    Book,
    Tag,
    WChild,
    WGrandChild,
    WParent,
    WStamp,
)
from vinyl.connection import capture_queries
from vinyl.db.transaction import in_atomic
from vinyl.testing import both_modes

# -- create / get_or_create / update_or_create ------------------------------------------------------


@both_modes
def test_create_is_one_insert(db):
    with capture_queries() as log:
        tag = yield Tag.vinyl.create(name="a")
    assert len(log) == 1 and tag.pk is not None and not tag._state.adding
    with pytest.raises(ValueError, match="do not exist in this model"):
        yield Author.vinyl.create(profile=None)


@both_modes
def test_get_or_create(db):
    tag, created = yield Tag.vinyl.get_or_create(name="a")
    assert created and tag.pk
    again, created = yield Tag.vinyl.get_or_create(name="a")
    assert not created and again.pk == tag.pk
    stamp, created = yield WStamp.vinyl.get_or_create(name="s", defaults={"score": lambda: 4})
    assert created and stamp.score == 4
    with pytest.raises(Exception, match="Invalid field name"):
        yield Tag.vinyl.get_or_create(name="b", defaults={"nope": 1})


@both_modes
def test_get_or_create_race_reraises_integrity_error_in_a_savepoint(db):
    yield Tag.vinyl.create(name="python")

    @vinyl.maybe_async
    def body():
        # get(pk=999) finds nothing, the INSERT conflicts on name, the re-get finds nothing.
        with pytest.raises(IntegrityError):
            yield Tag.vinyl.get_or_create(pk=999, defaults={"name": "python"})
        # The savepoint rolled back: the transaction is still usable.
        return (yield Tag.vinyl.create(name="after"))

    yield in_atomic("default", body)
    assert (yield Tag.vinyl.count()) == 2


@pytest.fixture
def outside(db):
    from tests.helpers import Outside

    sessions = Outside()
    yield sessions
    sessions.close()


@both_modes
def test_get_or_create_race_finds_the_concurrent_row(outside):
    # Another session inserts the row between get_or_create's get() and its INSERT.
    def racer(sender, instance, **kwargs):
        if instance.name == "raced":
            outside.conn.execute("INSERT INTO testapp_tag (name) VALUES ('raced')")

    signals.pre_save.connect(racer, sender=Tag, weak=False)
    try:
        with capture_queries() as log:
            tag, created = yield Tag.vinyl.get_or_create(name="raced")
    finally:
        signals.pre_save.disconnect(racer, sender=Tag)
    assert not created and tag.name == "raced" and tag.pk
    assert [s.split()[0] for s, _ in log if s.split()[0] in ("SELECT", "INSERT")] == [
        "SELECT", "INSERT", "SELECT"
    ]  # fmt: skip
    assert (yield Tag.vinyl.count()) == 1
    assert (yield Tag.vinyl.create(name="usable afterwards")).pk


@both_modes
def test_update_or_create(db):
    stamp, created = yield WStamp.vinyl.update_or_create(name="s", defaults={"score": 1})
    assert created and stamp.score == 1
    before = stamp.modified
    with capture_queries() as log:
        stamp2, created = yield WStamp.vinyl.update_or_create(name="s", defaults={"score": 2})
    assert not created and stamp2.pk == stamp.pk and stamp2.score == 2
    assert stamp2.modified > before  # auto_now fields are saved too
    assert any("FOR UPDATE" in sql for sql in statements(log, "SELECT"))
    stamp3, created = yield WStamp.vinyl.update_or_create(
        name="t", defaults={"score": 3}, create_defaults={"score": 30}
    )
    assert created and stamp3.score == 30


# -- update() ---------------------------------------------------------------------------------------


@both_modes
def test_queryset_update_returns_row_count(db):
    ann = yield Author.vinyl.create(name="Ann")
    for title in ("a", "b", "c"):
        yield Book.vinyl.create(author=ann, title=title, pages=1)
    with capture_queries() as log:
        n = yield Book.vinyl.filter(title__in=["a", "b"]).update(pages=F("pages") + 1)
    assert n == 2 and len(log) == 1
    assert (yield Book.vinyl.filter(author__name="Ann", pages=2).update(title="z")) == 2
    assert (yield Book.vinyl.filter(title="nope").update(pages=0)) == 0
    assert (yield Book.vinyl.none().update(pages=0)) == 0
    pages = yield Book.vinyl.order_by("title").values_list("title", "pages")
    assert pages == [("c", 1), ("z", 2), ("z", 2)]
    with pytest.raises(TypeError, match="slice"):
        yield Book.vinyl.all()[:1].update(pages=0)


@both_modes
def test_queryset_update_of_multi_table_parent_fields(db):
    for i in range(3):
        yield WChild.vinyl.create(name=f"c{i}", extra=i)
    yield WParent.vinyl.create(name="plain")
    with capture_queries() as log:
        n = yield WChild.vinyl.filter(extra__gte=1).update(name="big", extra=F("extra") * 10)
    assert n == 2
    assert [s.split()[0] for s in statements(log, "SELECT") + statements(log, "UPDATE")] == [
        "SELECT", "UPDATE", "UPDATE"
    ]  # fmt: skip
    rows = yield WChild.vinyl.order_by("pk").values_list("name", "extra")
    assert rows == [("c0", 0), ("big", 10), ("big", 20)]
    assert (yield WParent.vinyl.filter(name="plain").count()) == 1


# -- bulk_create ------------------------------------------------------------------------------------


@both_modes
def test_bulk_create_sets_pks_from_returning(db):
    tags = [Tag(name=f"t{i}") for i in range(5)]
    with capture_queries() as log:
        result = yield Tag.vinyl.bulk_create(tags)
    assert result == tags and len(log) == 1
    assert [t.pk for t in tags] == sorted(t.pk for t in tags) and all(t.pk for t in tags)
    assert all(not t._state.adding and t._state.db == "default" for t in tags)
    stamps = yield WStamp.vinyl.bulk_create([WStamp(name="a"), WStamp(name="b", counter=3)])
    assert [(s.counter, s.doubled) for s in stamps] == [(7, 14), (3, 6)]
    assert (yield Tag.vinyl.bulk_create([])) == []


@both_modes
def test_bulk_create_batches_in_one_transaction(db):
    with capture_queries() as log:
        yield Tag.vinyl.bulk_create([Tag(name=f"t{i}") for i in range(5)], batch_size=2)
    assert len(statements(log, "INSERT")) == 3
    with pytest.raises(IntegrityError):
        yield Tag.vinyl.bulk_create([Tag(name="new"), Tag(name="t0")], batch_size=1)
    assert not (yield Tag.vinyl.filter(name="new").exists())
    with pytest.raises(ValueError, match="positive"):
        yield Tag.vinyl.bulk_create([Tag(name="x")], batch_size=0)


@both_modes
def test_bulk_create_conflicts(db):
    yield Tag.vinyl.bulk_create([Tag(name="a"), Tag(name="b")])
    yield Tag.vinyl.bulk_create([Tag(name="a"), Tag(name="c")], ignore_conflicts=True)
    assert (yield Tag.vinyl.order_by("name").values_list("name", flat=True)) == ["a", "b", "c"]
    yield WStamp.vinyl.bulk_create([WStamp(name="s", score=1)])
    rows = yield WStamp.vinyl.bulk_create(
        [WStamp(name="s", score=5), WStamp(name="u", score=6)],
        update_conflicts=True,
        unique_fields=["name"],
        update_fields=["score"],
    )
    assert all(r.pk for r in rows)
    scores = yield WStamp.vinyl.order_by("name").values_list("name", "score")
    assert scores == [("s", 5), ("u", 6)]
    with pytest.raises(ValueError, match="mutually exclusive"):
        yield Tag.vinyl.bulk_create([Tag(name="z")], ignore_conflicts=True, update_conflicts=True)


@both_modes
def test_bulk_create_multi_table_inheritance(db):
    objs = [WGrandChild(name=f"g{i}", extra=i, level=i * 2) for i in range(3)]
    with capture_queries() as log:
        yield WGrandChild.vinyl.bulk_create(objs)
    inserts = statements(log, "INSERT")
    assert [s.split('"')[1] for s in inserts] == [
        "testapp_wparent", "testapp_wchild", "testapp_wgrandchild"
    ]  # fmt: skip
    assert all(o.pk == o.wparent_ptr_id == o.wchild_ptr_id for o in objs)
    got = yield WGrandChild.vinyl.order_by("pk").values_list("pk", "name", "extra", "level")
    assert got == [(o.pk, o.name, o.extra, o.level) for o in objs]
    assert (yield WParent.vinyl.count()) == 3
    with pytest.raises(NotSupportedError, match="multi-table"):
        yield WChild.vinyl.bulk_create([WChild(name="x")], ignore_conflicts=True)


@both_modes
def test_bulk_create_multi_table_failure_leaves_nothing(db):
    with pytest.raises(Exception):  # noqa: B017 - DataError: extra out of integer range
        yield WChild.vinyl.bulk_create([WChild(name="a", extra=1), WChild(name="b", extra=2**40)])
    assert (yield WParent.vinyl.count()) == 0


# -- bulk_update ------------------------------------------------------------------------------------


@both_modes
def test_bulk_update(db):
    tags = yield Tag.vinyl.bulk_create([Tag(name=f"t{i}") for i in range(4)])
    for tag in tags:
        tag.name = tag.name.upper()
    with capture_queries() as log:
        n = yield Tag.vinyl.bulk_update(tags, ["name"], batch_size=3)
    assert n == 4 and len(statements(log, "UPDATE")) == 2
    assert (yield Tag.vinyl.order_by("pk").values_list("name", flat=True)) == [
        "T0", "T1", "T2", "T3"
    ]  # fmt: skip
    with pytest.raises(ValueError, match="primary key"):
        yield Tag.vinyl.bulk_update(tags, ["id"])
    with pytest.raises(ValueError, match="Field names must be given"):
        yield Tag.vinyl.bulk_update(tags, [])
    assert (yield Tag.vinyl.bulk_update([], ["name"])) == 0


@both_modes
def test_bulk_update_multi_table_fields(db):
    objs = yield WChild.vinyl.bulk_create([WChild(name="a", extra=1), WChild(name="b", extra=2)])
    for obj in objs:
        obj.name, obj.extra = obj.name * 2, obj.extra * 3
    assert (yield WChild.vinyl.bulk_update(objs, ["name", "extra"])) == 2
    rows = yield WChild.vinyl.order_by("pk").values_list("name", "extra")
    assert rows == [("aa", 3), ("bb", 6)]


# -- a-methods --------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_native_a_methods(db):
    tag = await Tag.vinyl.acreate(name="a")
    _, created = await Tag.vinyl.aget_or_create(name="a")
    assert not created
    await Tag.vinyl.aupdate_or_create(name="b")
    await Tag.vinyl.abulk_create([Tag(name="c")])
    tag.name = "A"
    await Tag.vinyl.abulk_update([tag], ["name"])
    assert await Tag.vinyl.filter(name="A").aupdate(name="a") == 1
    await tag.arefresh_from_db()
    assert tag.name == "a"
    tag.name = "A"
    await tag.asave()
    assert await Tag.vinyl.filter(name="A").aexists()
    assert (await tag.adelete())[0] == 1
    assert (await Tag.vinyl.all().adelete())[0] == 2
    await vinyl.close_pools()


# -- differential ----------------------------------------------------------------------------------


def _django_ops() -> None:
    ann = Author.objects.create(name="Ann")
    Book.objects.bulk_create([Book(author=ann, title=t, pages=i) for i, t in enumerate("abcd")])
    Book.objects.filter(pages__gte=2).update(pages=F("pages") * 10, title="big")
    books = list(Book.objects.order_by("pk"))
    for b in books:
        b.price = b.pages + 1
    Book.objects.bulk_update(books, ["price"], batch_size=3)
    Tag.objects.bulk_create([Tag(name="x"), Tag(name="y")])
    Tag.objects.bulk_create([Tag(name="x"), Tag(name="z")], ignore_conflicts=True)
    WStamp.objects.bulk_create(
        [WStamp(name="x", score=1), WStamp(name="y", score=2)],
        update_conflicts=True, unique_fields=["name"], update_fields=["score"],
    )  # fmt: skip
    WStamp.objects.bulk_create(
        [WStamp(name="x", score=9)],
        update_conflicts=True, unique_fields=["name"], update_fields=["score"],
    )  # fmt: skip
    WChild.objects.filter(extra=2).update(name="two", extra=20)  # no rows yet


@vinyl.maybe_async
def _vinyl_ops():
    ann = yield Author.vinyl.create(name="Ann")
    yield Book.vinyl.bulk_create([Book(author=ann, title=t, pages=i) for i, t in enumerate("abcd")])
    yield Book.vinyl.filter(pages__gte=2).update(pages=F("pages") * 10, title="big")
    books = yield Book.vinyl.order_by("pk")
    for b in books:
        b.price = b.pages + 1
    yield Book.vinyl.bulk_update(books, ["price"], batch_size=3)
    yield Tag.vinyl.bulk_create([Tag(name="x"), Tag(name="y")])
    yield Tag.vinyl.bulk_create([Tag(name="x"), Tag(name="z")], ignore_conflicts=True)
    yield WStamp.vinyl.bulk_create(
        [WStamp(name="x", score=1), WStamp(name="y", score=2)],
        update_conflicts=True, unique_fields=["name"], update_fields=["score"],
    )  # fmt: skip
    yield WStamp.vinyl.bulk_create(
        [WStamp(name="x", score=9)],
        update_conflicts=True, unique_fields=["name"], update_fields=["score"],
    )  # fmt: skip
    yield WChild.vinyl.filter(extra=2).update(name="two", extra=20)


DIFF_MODELS = (Author, Book, Tag, WStamp, WParent, WChild)


@pytest.fixture
def django_result(db):
    return run_with_django(_django_ops, DIFF_MODELS)


@both_modes
def test_same_database_state_and_statements_as_django(django_result):
    yield assert_same_as_django(django_result, _vinyl_ops, DIFF_MODELS)


@pytest.fixture
def django_multi_table(db):
    for child in (WChild(name="c1", extra=1), WChild(name="c2", extra=2)):
        models.Model.save(child)  # Django refuses bulk_create() here
    WChild.objects.filter(extra=2).update(name="two", extra=20)
    state = django_state(WParent, WChild)
    reset_tables()
    return state


@both_modes
def test_multi_table_bulk_create_gives_the_rows_django_saves(django_multi_table):
    yield WChild.vinyl.bulk_create([WChild(name="c1", extra=1), WChild(name="c2", extra=2)])
    yield WChild.vinyl.filter(extra=2).update(name="two", extra=20)
    assert (yield vinyl_state(WParent, WChild)) == django_multi_table


@both_modes
def test_multi_table_bulk_create_with_explicit_pks_gives_them_to_the_parents(db):
    objs = [WGrandChild(pk=500 + i, name=f"g{i}") for i in range(2)]
    objs.append(WGrandChild(name="auto"))
    yield WGrandChild.vinyl.bulk_create(objs)
    assert [o.pk for o in objs[:2]] == [500, 501] and objs[2].pk not in (500, 501)
    parents = yield WParent.vinyl.order_by("pk").values_list("pk", "name")
    assert parents == sorted((o.pk, o.name) for o in objs)
    children = yield WGrandChild.vinyl.order_by("pk").values_list("wchild_ptr_id", flat=True)
    assert children == sorted(o.pk for o in objs)
