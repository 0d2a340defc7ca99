"""Where vinyl differed from Django's own semantics (issue 11, item 7), in both modes.

* a sync receiver runs in sync mode whichever API started the write (the a-methods included);
* save() overrides and a custom manager's _insert() are honoured, or refused with an error naming
  the fix where async mode cannot call synchronous code: never skipped;
* aiterator() checks its arguments when iterated, as Django's.
"""

from __future__ import annotations

import pytest
from django.db.models import signals

from tests.testapp import models as testapp
from tests.testapp.models import AuditedNote, Author, ShoutingNote
from vinyl import is_async
from vinyl.testing import both_modes


@pytest.fixture
def counting_receiver(db):
    seen = []

    def receiver(sender, instance, **kwargs):  # sync code, as a Django project writes it
        seen.append((is_async(), Author.vinyl.filter(name=instance.name).count()))

    signals.post_save.connect(receiver, sender=Author)
    yield seen
    signals.post_save.disconnect(receiver, sender=Author)
    # The async run's sync receivers ran in asgiref's worker thread, on a Django connection of
    # that thread: close it, the test database is dropped at the end.
    from asgiref.sync import SyncToAsync
    from django.db import connections

    SyncToAsync.single_thread_executor.submit(connections.close_all).result()


@both_modes
def test_sync_receiver_sees_sync_mode_after_an_a_method(counting_receiver, vinyl_mode):
    if vinyl_mode == "sync":
        Author.vinyl.create(name="Ann")
        Author(name="Bob").save()
    else:
        yield Author.vinyl.acreate(name="Ann")  # a-methods set async mode explicitly
        bob = Author(name="Bob")
        yield bob.asave()
    assert counting_receiver == [(False, 1), (False, 1)]
    yield None


@both_modes
def test_save_override_of_a_plain_model(db, vinyl_mode):
    if vinyl_mode == "sync":
        note = ShoutingNote.vinyl.create(text="quiet")
        assert note.text == "QUIET"
        note, created = ShoutingNote.vinyl.get_or_create(text="other")
        assert created and note.text == "OTHER"
        assert sorted(ShoutingNote.objects.values_list("text", flat=True)) == ["OTHER", "QUIET"]
        return
    for call in (
        lambda: ShoutingNote.vinyl.create(text="quiet"),
        lambda: ShoutingNote.vinyl.get_or_create(text="quiet"),
        lambda: ShoutingNote.vinyl.update_or_create(text="quiet", defaults={"text": "x"}),
    ):
        with pytest.raises(TypeError, match=r"ShoutingNote\.save\(\).*sync mode"):
            yield call()
    assert (yield ShoutingNote.vinyl.count()) == 0  # nothing saved behind the override's back


@both_modes
def test_custom_insert_of_the_base_manager(db, vinyl_mode):
    testapp.INSERT_CALLS.clear()
    if vinyl_mode == "sync":
        AuditedNote.vinyl.create(text="a")
        note = AuditedNote(text="b")
        note.save()
        assert testapp.INSERT_CALLS == ["a", "b"]
        return
    with pytest.raises(TypeError, match=r"AuditedQuerySet\._insert\(\).*sync mode"):
        yield AuditedNote.vinyl.create(text="a")
    with pytest.raises(TypeError, match=r"AuditedQuerySet\._insert\(\)"):
        yield AuditedNote(text="b").save()
    assert testapp.INSERT_CALLS == []
    assert (yield AuditedNote.vinyl.count()) == 0


@pytest.mark.anyio
async def test_aiterator_checks_its_arguments_when_iterated(db):
    iterator = Author.vinyl.aiterator(chunk_size=0)  # no error yet, as Django's
    with pytest.raises(ValueError, match="Chunk size must be strictly positive"):
        async for _ in iterator:
            pass
    await Author.vinyl.acreate(name="Ann")
    assert [a.name async for a in Author.vinyl.aiterator(chunk_size=10)] == ["Ann"]
