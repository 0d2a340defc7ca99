import pytest
from django.db.models import Sum

from tests.testapp.models import Author, Book
from vinyl.testing import both_modes


@pytest.fixture
def books(db):
    ann = Author.objects.create(name="Ann")
    Book.objects.create(author=ann, title="A", pages=1)
    Book.objects.create(author=ann, title="B", pages=2)


@both_modes
def test_read_basics(books):
    found = yield Book.vinyl.filter(author__name="Ann").select_related("author").order_by("pk")
    assert [b.title for b in found] == ["A", "B"]
    assert found[0].author.name == "Ann"
    b = yield Book.vinyl.get(title="B")
    assert b.pages == 2
    assert (yield Book.vinyl.count()) == 2
    assert (yield Book.vinyl.filter(pages__gt=1).exists())
    assert (yield Book.vinyl.aggregate(total=Sum("pages"))) == {"total": 3}
    first = yield Book.vinyl.order_by("title").first()
    assert first.title == "A"
