import pytest
from django.db import connection as django_connection


@pytest.fixture
def django_pid(db):
    """The server process of Django's own connection (the db fixture closes it)."""
    django_connection.ensure_connection()
    return django_connection.connection.info.backend_pid
