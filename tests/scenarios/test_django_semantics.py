"""Where vinyl differed from Django's own semantics (issue 11, item 7), in both modes.

* a sync receiver runs in sync mode whichever API started the write (the a-methods included);
* save() overrides and a custom manager's _insert() are honoured in both modes: a synchronous
  override (Django's way, no ``return super().save()``) runs once in vinyl's worker thread in
  async mode, its queries in the calling task's transaction;
* aiterator() checks its arguments when iterated, as Django's.
"""

from __future__ import annotations

import threading

import pytest
from django.db import IntegrityError
from django.db.models import signals

from tests.testapp import models as testapp
from tests.testapp.models import AuditedNote, Author, ReturningNote, ShoutingNote, SyncSavedNote
from vinyl import atomic, is_async, maybe_async
from vinyl.testing import both_modes


class Boom(Exception):
    pass


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
def test_sync_receiver_runs_in_the_senders_transaction(db, vinyl_mode):
    seen = []

    def receiver(sender, instance, **kwargs):  # sync code: in async mode, vinyl's worker thread
        seen.append((is_async(), Author.vinyl.filter(name=instance.name).count()))
        ShoutingNote.vinyl.create(text=instance.name)  # a write (its own save() override too)

    @atomic
    @maybe_async
    def work():
        yield Author.vinyl.create(name="Ann")
        assert (yield ShoutingNote.vinyl.values_list("text", flat=True)) == ["ANN"]
        raise Boom

    signals.post_save.connect(receiver, sender=Author)
    try:
        with pytest.raises(Boom):
            yield work()
    finally:
        signals.post_save.disconnect(receiver, sender=Author)
    assert seen == [(False, 1)]  # saw the uncommitted row
    assert (yield ShoutingNote.vinyl.count()) == 0  # rolled back with the sender's transaction


@both_modes
def test_save_override_of_a_plain_model(db, vinyl_mode):
    note = yield ShoutingNote.vinyl.create(text="quiet")
    assert note.text == "QUIET"
    note, created = yield ShoutingNote.vinyl.get_or_create(text="other")
    assert created and note.text == "OTHER"
    note, created = yield ShoutingNote.vinyl.update_or_create(
        text="OTHER", defaults={"text": "third"}
    )
    assert not created and note.text == "THIRD"
    assert sorted((yield ShoutingNote.vinyl.values_list("text", flat=True))) == ["QUIET", "THIRD"]


@both_modes
def test_custom_insert_of_the_base_manager(db, vinyl_mode):
    testapp.INSERT_CALLS.clear()
    yield AuditedNote.vinyl.create(text="a")
    yield AuditedNote(text="b").save()
    assert testapp.INSERT_CALLS == ["a", "b"]
    assert (yield AuditedNote.vinyl.count()) == 2


@pytest.fixture
def save_log(db):
    testapp.SAVE_LOG.clear()
    seen = []

    def receiver(sender, instance, created, **kwargs):
        seen.append((instance.text, created))

    signals.post_save.connect(receiver, sender=SyncSavedNote)
    yield seen
    signals.post_save.disconnect(receiver, sender=SyncSavedNote)
    testapp.SAVE_LOG.clear()


@both_modes
def test_sync_save_override_runs_as_in_django(save_log, vinyl_mode):
    # Django's way: super().save() without return, then code that needs the row. In async mode
    # the override runs once in vinyl's worker thread, in sync mode; its queries run in the task.
    yield ShoutingNote.vinyl.create(text="x")
    note = SyncSavedNote.vinyl(text=" a ")
    assert (yield note.save()) is None
    assert note.pk is not None and note.text == "a"
    created = yield SyncSavedNote.vinyl.create(text=" b")
    note.text = "a2"
    yield note.save(update_fields=["text"])
    # once each, after the write, in sync mode (sync code), with both ORMs working
    assert testapp.SAVE_LOG == [
        ("sync override", "a", True, False, 1, 1),
        ("sync override", "b", True, False, 1, 1),
        ("sync override", "a2", True, False, 1, 1),
    ]
    assert save_log == [("a", True), ("b", True), ("a2", False)]
    assert sorted((yield SyncSavedNote.vinyl.values_list("text", flat=True))) == ["a2", "b"]
    assert created.text == "b"


@both_modes
def test_sync_save_override_in_a_transaction(save_log, vinyl_mode):
    # The override's super().save() and its own queries run in the caller's transaction: they
    # see its rows and its rollback undoes them.
    @atomic
    @maybe_async
    def work():
        yield ShoutingNote.vinyl.create(text="in the block")
        yield SyncSavedNote.vinyl.create(text="a")
        assert (yield SyncSavedNote.vinyl.count()) == 1
        raise Boom

    with pytest.raises(Boom):
        yield work()
    assert testapp.SAVE_LOG == [("sync override", "a", True, False, 1, 1)]
    assert (yield SyncSavedNote.vinyl.count()) == 0
    assert (yield ShoutingNote.vinyl.count()) == 0


@both_modes
def test_sync_save_override_errors_are_djangos(save_log, vinyl_mode):
    yield SyncSavedNote.vinyl.create(text="a")
    with pytest.raises(IntegrityError):
        yield SyncSavedNote.vinyl.create(text="a ")  # stripped to "a": unique
    assert [entry[1] for entry in testapp.SAVE_LOG] == ["a"]  # stopped at super().save()
    assert (yield SyncSavedNote.vinyl.count()) == 1


@both_modes
def test_returning_save_override_runs_in_the_callers_thread(db, vinyl_mode):
    testapp.SAVE_LOG.clear()
    caller = threading.current_thread().name
    note = yield ReturningNote.vinyl.create(text="a")
    yield note.save()
    seen = testapp.SAVE_LOG
    assert seen == [("returning override", caller), ("returning override", caller)]
    assert (yield ReturningNote.vinyl.count()) == 1


@pytest.mark.anyio
async def test_aiterator_checks_its_arguments_when_iterated(db):
    iterator = Author.vinyl.aiterator(chunk_size=0)  # no error yet, as Django's
    with pytest.raises(ValueError, match="Chunk size must be strictly positive"):
        async for _ in iterator:
            pass
    await Author.vinyl.acreate(name="Ann")
    assert [a.name async for a in Author.vinyl.aiterator(chunk_size=10)] == ["Ann"]


@both_modes
def test_raw_connection_in_sync_code_run_by_the_worker(db, vinyl_mode):
    from django.db import connection

    def receiver(sender, instance, **kwargs):
        with connection.cursor() as cursor:  # Django's own connection of the thread
            cursor.execute("SELECT 1")

    signals.post_save.connect(receiver, sender=Author)
    try:
        if vinyl_mode == "sync":
            yield Author.vinyl.create(name="Ann")
        else:
            with pytest.raises(RuntimeError, match="only ORM queries reach the calling task"):
                yield Author.vinyl.create(name="Ann")
    finally:
        signals.post_save.disconnect(receiver, sender=Author)
