"""The demo's tests: ``python -m pytest demo/tests`` (DATABASE_URL, or an embedded server).

They run apart from vinyl's own suite (``tests/``), which configures Django with other settings.
"""

import contextlib
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))

_server = contextlib.ExitStack()


def pytest_configure(config):
    from devtools.embedded_db import database_url

    os.environ["DATABASE_URL"] = _server.enter_context(database_url())
    os.environ["DJANGO_SETTINGS_MODULE"] = "demo.settings"
    import django

    django.setup()


def pytest_unconfigure(config):
    _server.close()


@pytest.fixture(scope="session")
def django_db_setup():
    from django.test.utils import setup_databases, teardown_databases

    old = setup_databases(verbosity=0, interactive=False, keepdb=False)
    yield
    from django.db import connections

    for conn in connections.all(initialized_only=True):
        conn.close()
        conn.close_pool()
    teardown_databases(old, verbosity=0)


@pytest.fixture
def db(django_db_setup):
    """A freshly seeded database for each test."""
    from django.db import connection

    from demo.food.seed import seed

    tables = ", ".join(
        f'"{table}"' for table in connection.introspection.django_table_names(only_existing=True)
    )
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
    seed()
    yield
    connection.close()


@pytest.fixture(scope="session")
def anyio_backend():
    return "asyncio"
