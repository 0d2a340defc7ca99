"""Sync mode: Django's own write paths keep working on VinylModels (Model.objects, ModelForm,
fixtures, Django's related managers), and those that call save() run vinyl's implementation on
Django's connection and transaction."""

from django import forms
from django.core import serializers
from django.db import transaction

from tests.testapp.models import Author, Book, Tag, WStamp
from vinyl.connection import capture_queries


class StampForm(forms.ModelForm):
    class Meta:
        model = WStamp
        fields = ["name", "score"]


def test_model_objects_create_and_save_run_through_vinyl(db):
    with capture_queries() as log:
        ann = Author.objects.create(name="Ann")
        ann.name = "Anne"
        ann.save()
    assert [sql.split()[0] for sql, _ in log] == ["INSERT", "UPDATE"]
    assert Author.objects.get().name == "Anne"
    assert Author.objects.get_or_create(name="Anne")[1] is False
    ann.delete()
    assert Author.objects.count() == 0


def test_model_form_save(db):
    form = StampForm(data={"name": "f", "score": "3"})
    assert form.is_valid(), form.errors
    stamp = form.save()
    assert stamp.pk and stamp.counter == 7 and stamp.doubled == 14
    form = StampForm(data={"name": "g", "score": "4"}, instance=stamp)
    assert form.save().score == 4
    assert WStamp.objects.get().name == "g"


def test_fixture_loading_uses_djangos_raw_save(db):
    data = '[{"model": "testapp.tag", "pk": 7, "fields": {"name": "fixture"}}]'
    for obj in serializers.deserialize("json", data):
        obj.save()
    assert Tag.objects.get(pk=7).name == "fixture"


def test_djangos_related_managers_and_transactions(db):
    ann = Author.objects.create(name="Ann")
    with transaction.atomic():
        book = ann.books.create(title="A")
        tag = Tag.objects.create(name="t")
        book.tags.add(tag)
        transaction.set_rollback(True)
    assert Book.objects.count() == 0 and Tag.objects.count() == 0
    book = ann.books.create(title="B")
    book.tags.create(name="u")
    assert list(book.tags.values_list("name", flat=True)) == ["u"]
