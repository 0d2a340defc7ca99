"""Model signals fire in both modes with Django's arguments; async receivers are awaited.

Sync mode sends with ``Signal.send`` (an async receiver runs through async_to_sync); async mode
with ``Signal.asend`` (async receivers on the loop, sync receivers in a worker thread).
"""

from __future__ import annotations

import threading

import pytest
from django.db.models import signals

from tests.testapp.models import WChild, WRef, WTarget
from vinyl.testing import both_modes

SIGNALS = {
    "pre_save": signals.pre_save,
    "post_save": signals.post_save,
    "pre_delete": signals.pre_delete,
    "post_delete": signals.post_delete,
}


@pytest.fixture
def received(db):
    calls: list[tuple] = []

    def make(name: str, kind: str):
        def sync_receiver(sender, **kwargs):
            calls.append((kind, name, sender, _args(kwargs), threading.get_ident()))

        async def async_receiver(sender, **kwargs):
            calls.append((kind, name, sender, _args(kwargs), threading.get_ident()))

        return sync_receiver if kind == "sync" else async_receiver

    connected = []
    for name, signal in SIGNALS.items():
        for kind in ("sync", "async"):
            receiver = make(name, kind)
            for sender in (WTarget, WChild, WRef):
                signal.connect(receiver, sender=sender, weak=False)
                connected.append((signal, receiver, sender))
    yield calls
    for signal, receiver, sender in connected:
        signal.disconnect(receiver, sender=sender)


def _args(kwargs: dict) -> dict:
    out = dict(kwargs)
    out.pop("signal", None)
    instance = out.pop("instance", None)
    out["instance"] = type(instance).__name__
    if "origin" in out:
        out["origin"] = type(out["origin"]).__name__
    if out.get("update_fields") is not None:
        out["update_fields"] = sorted(out["update_fields"])
    return out


def by_kind(calls: list[tuple], kind: str) -> list[tuple]:
    return [(name, sender.__name__, args) for k, name, sender, args, _ in calls if k == kind]


@both_modes
def test_save_signals(received, vinyl_mode):
    target = WTarget.vinyl(name="t")
    yield target.insert()
    target.name = "u"
    yield target.save()
    yield target.save(update_fields=["name"])
    yield target.update(name="v")
    expected = [
        ("pre_save", "WTarget", {"raw": False, "using": "default", "update_fields": None,
                                 "instance": "WTarget"}),
        ("post_save", "WTarget", {"created": True, "update_fields": None, "raw": False,
                                  "using": "default", "instance": "WTarget"}),
        ("pre_save", "WTarget", {"raw": False, "using": "default", "update_fields": None,
                                 "instance": "WTarget"}),
        ("post_save", "WTarget", {"created": False, "update_fields": None, "raw": False,
                                  "using": "default", "instance": "WTarget"}),
        ("pre_save", "WTarget", {"raw": False, "using": "default", "update_fields": ["name"],
                                 "instance": "WTarget"}),
        ("post_save", "WTarget", {"created": False, "update_fields": ["name"], "raw": False,
                                  "using": "default", "instance": "WTarget"}),
        ("pre_save", "WTarget", {"raw": False, "using": "default", "update_fields": ["name"],
                                 "instance": "WTarget"}),
        ("post_save", "WTarget", {"created": False, "update_fields": ["name"], "raw": False,
                                  "using": "default", "instance": "WTarget"}),
    ]  # fmt: skip
    assert by_kind(received, "sync") == expected
    assert by_kind(received, "async") == expected
    if vinyl_mode == "async":
        loop_thread = threading.get_ident()
        assert {t for k, *_, t in received if k == "async"} == {loop_thread}
        # Signal.asend() runs sync receivers through sync_to_async: in a worker thread.
        assert loop_thread not in {t for k, *_, t in received if k == "sync"}


@both_modes
def test_update_of_a_missing_row_sends_no_post_save(received):
    target = yield WTarget.vinyl.create(name="t")
    yield WTarget.vinyl.filter(pk=target.pk).delete()
    received.clear()
    assert (yield target.update(name="x")) is False
    assert [name for _, name, *_ in received] == ["pre_save", "pre_save"]


@pytest.fixture
def django_delete_signals(received):
    """The signals Django's own Model.delete() sends for the scenario below."""
    from django.db import models

    from tests.helpers import reset_tables

    target = WTarget.objects.create(name="t")
    WRef.objects.create(name="r", cascade=target)
    received.clear()
    models.Model.delete(target)
    sent = [(name, sender.__name__, args["instance"], args["origin"])
            for kind, name, sender, args, _ in received if kind == "sync"]  # fmt: skip
    reset_tables()
    received.clear()
    return sent


@both_modes
def test_delete_signals_with_origin_and_cascades(received, django_delete_signals):
    target = yield WTarget.vinyl.create(name="t")
    yield WRef.vinyl.create(name="r", cascade=target)
    received.clear()
    yield target.delete()
    names = [(name, sender.__name__, args["instance"], args["origin"])
             for kind, name, sender, args, _ in received if kind == "sync"]  # fmt: skip
    assert names == django_delete_signals
    assert sorted(names) == sorted([
        ("pre_delete", "WTarget", "WTarget", "WTarget"),
        ("pre_delete", "WRef", "WRef", "WTarget"),
        ("post_delete", "WRef", "WRef", "WTarget"),
        ("post_delete", "WTarget", "WTarget", "WTarget"),
    ])  # fmt: skip
    assert len(by_kind(received, "async")) == 4
    received.clear()
    yield WTarget.vinyl.create(name="q")
    received.clear()
    yield WTarget.vinyl.filter(name="q").delete()
    assert [(n, a["origin"]) for n, _, a in by_kind(received, "sync")] == [
        ("pre_delete", "VinylQuerySet"),
        ("post_delete", "VinylQuerySet"),
    ]


@both_modes
def test_multi_table_save_sends_one_pair_for_the_child(received):
    yield WChild.vinyl(name="c", extra=1).insert()
    assert [(n, s) for n, s, _ in by_kind(received, "sync")] == [
        ("pre_save", "WChild"),
        ("post_save", "WChild"),
    ]


@both_modes
def test_bulk_operations_send_no_save_signals(received):
    yield WTarget.vinyl.bulk_create([WTarget(name="a"), WTarget(name="b")])
    yield WTarget.vinyl.update(name="c")
    assert received == []


@both_modes
def test_a_failing_receiver_stops_the_save(received):
    class Refused(Exception):
        pass

    def refuse(sender, **kwargs):
        raise Refused

    signals.pre_save.connect(refuse, sender=WTarget, weak=False)
    try:
        with pytest.raises(Refused):
            yield WTarget.vinyl(name="x").insert()
    finally:
        signals.pre_save.disconnect(refuse, sender=WTarget)
    assert (yield WTarget.vinyl.count()) == 0
