"""Deletes in both modes follow Django's rules: each scenario runs with Django's own delete in a
sync fixture and with vinyl in the test's mode, on the same seeded data, and must give the same
result (count and per-model counts, or the same ProtectedError/RestrictedError), the same
database state afterwards, and the same statements (SELECT/UPDATE/DELETE) in number.
"""

from __future__ import annotations

import pytest
from django.apps import apps
from django.db import connection, models
from django.db.models.deletion import ProtectedError, RestrictedError
from django.test.utils import CaptureQueriesContext

from tests.helpers import django_state, reset_tables, vinyl_state
from tests.testapp.models import (
    Author,
    Book,
    Chapter,
    Note,
    Profile,
    Shelf,
    Tag,
    WChild,
    WGrandChild,
    WLeaf,
    WRef,
    WSelective,
    WTarget,
)
from vinyl.connection import capture_queries
from vinyl.testing import both_modes

VERBS = ("SELECT", "UPDATE", "DELETE", "INSERT")


def all_models() -> list[type[models.Model]]:
    app = apps.get_app_config("testapp")
    found = list(app.get_models())
    found += [f.remote_field.through for m in app.get_models() for f in m._meta.local_many_to_many]
    return found


def seed() -> None:
    ann = Author.objects.create(name="Ann")
    bob = Author.objects.create(name="Bob")
    python, django = Tag.objects.create(name="python"), Tag.objects.create(name="django")
    a = Book.objects.create(author=ann, editor=bob, title="A")
    b = Book.objects.create(author=bob, editor=ann, title="B")
    a.tags.add(python, django)
    b.tags.add(python)
    Chapter.objects.create(book=a, number=1, title="one")
    Profile.objects.create(author=ann, bio="")
    WTarget.objects.create(name="free")
    prot, rest, mixed, both = (
        WTarget.objects.create(name=n) for n in ("prot", "rest", "mixed", "both")
    )
    WRef.objects.create(name="p", protect=prot)
    WRef.objects.create(name="r", restrict=rest)
    WRef.objects.create(
        name="m", set_null=mixed, set_default=mixed, set_value=mixed, do_nothing=mixed
    )
    WRef.objects.create(name="c", cascade=mixed)
    WRef.objects.create(name="rc", restrict=both, cascade=both)
    g = WGrandChild.objects.create(name="g", extra=1, level=1)
    WLeaf.objects.create(owner=g, label="of g")
    c = WChild.objects.create(name="c", extra=2)
    WLeaf.objects.create(owner=c, label="of c")
    shelf = Shelf.objects.create(name="s")
    Note.objects.create(content_object=shelf, text="n")
    WSelective.objects.create(name="lonely")


# name: (model, filters, keep_parents, as a queryset)
SCENARIOS = {
    "cascade author": (Author, {"name": "Ann"}, False, False),
    "books queryset": (Book, {}, False, True),
    "m2m rows of a tag": (Tag, {"name": "python"}, False, False),
    "protect": (WTarget, {"name": "prot"}, False, False),
    "restrict": (WTarget, {"name": "rest"}, False, False),
    "set null, default, value, do nothing, cascade": (WTarget, {"name": "mixed"}, False, False),
    "restrict also cascaded": (WTarget, {"name": "both"}, False, False),
    "targets queryset with protect": (WTarget, {}, False, True),
    "targets queryset": (WTarget, {"name__in": ["free", "mixed"]}, False, True),
    "multi-table grandchild": (WGrandChild, {"name": "g"}, False, False),
    "multi-table keep_parents": (WGrandChild, {"name": "g"}, True, False),
    "multi-table queryset": (WChild, {}, False, True),
    "generic relation": (Shelf, {"name": "s"}, False, False),
    "fast single object": (WSelective, {"name": "lonely"}, False, False),
    "empty queryset": (Author, {"name": "nobody"}, False, True),
}


def outcome(run):
    try:
        return ("ok", run())
    except (ProtectedError, RestrictedError) as exc:
        return (type(exc).__name__, str(exc))


def verbs(sqls: list[str]) -> list[str]:
    return [s.split()[0].upper() for s in sqls if s.split()[0].upper() in VERBS]


@pytest.fixture(params=list(SCENARIOS))
def scenario(request, db):
    name = request.param
    model, filters, keep_parents, as_queryset = SCENARIOS[name]
    seed()

    def run():
        if as_queryset:
            return model.objects.filter(**filters).delete()
        obj = model.objects.get(**filters)
        return models.Model.delete(obj, keep_parents=keep_parents)

    with CaptureQueriesContext(connection) as ctx:
        result = outcome(run)
    state = django_state(*all_models())
    queries = verbs([q["sql"] for q in ctx.captured_queries])
    reset_tables()
    seed()
    return name, result, state, queries


@both_modes
def test_delete_as_django(scenario):
    name, expected, expected_state, expected_queries = scenario
    model, filters, keep_parents, as_queryset = SCENARIOS[name]
    if not as_queryset:
        obj = yield model.vinyl.get(**filters)
    with capture_queries() as log:
        try:
            if as_queryset:
                result = ("ok", (yield model.vinyl.filter(**filters).delete()))
            else:
                result = ("ok", (yield obj.delete(keep_parents=keep_parents)))
        except (ProtectedError, RestrictedError) as exc:
            result = (type(exc).__name__, str(exc))
    assert result == expected
    assert (yield vinyl_state(*all_models())) == expected_state
    # Django's side also ran the get() of the instance.
    assert verbs([sql for sql, _ in log]) == expected_queries[0 if as_queryset else 1 :]
    if result[0] == "ok" and not as_queryset:
        assert obj.pk is None  # as Django: the deleted instance loses its pk


@both_modes
def test_deleted_instances_keep_their_pks_cleared_and_can_be_reinserted(db):
    tag = yield Tag.vinyl.create(name="t")
    count, per_model = yield tag.delete()
    assert (count, per_model) == (1, {"testapp.Tag": 1})
    assert tag.pk is None
    yield tag.save()
    assert tag.pk is not None and (yield Tag.vinyl.count()) == 1


@both_modes
def test_unsaved_instance_cannot_be_deleted(db):
    with pytest.raises(ValueError, match="can't be deleted because its id attribute is set"):
        yield Tag.vinyl(name="x").delete()


@both_modes
def test_queryset_delete_refuses_what_django_refuses(db):
    with pytest.raises(TypeError, match="limit"):
        yield Tag.vinyl.all()[:1].delete()
    with pytest.raises(TypeError, match="values"):
        yield Tag.vinyl.values("name").delete()


@both_modes
def test_a_failure_mid_delete_leaves_nothing_deleted(db):
    from django.db.models import signals

    target = yield WTarget.vinyl.create(name="t")
    yield WRef.vinyl.create(name="r", cascade=target)
    yield WRef.vinyl.create(name="n", set_null=target)

    class Boom(Exception):
        pass

    def explode(sender, **kwargs):
        raise Boom

    signals.post_delete.connect(explode, sender=WRef, weak=False)
    try:
        with pytest.raises(Boom):
            yield target.delete()
    finally:
        signals.post_delete.disconnect(explode, sender=WRef)
    assert (yield WTarget.vinyl.count()) == 1
    assert (yield WRef.vinyl.filter(set_null=target).count()) == 1
    assert (yield WRef.vinyl.count()) == 2
