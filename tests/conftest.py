"""Test session setup: a PostgreSQL server (DATABASE_URL or embedded), Django, a test database."""

import contextlib
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

_server = contextlib.ExitStack()


def pytest_configure(config):
    if "DATABASE_URL" not in os.environ:
        from devtools.embedded_db import database_url

        os.environ["DATABASE_URL"] = _server.enter_context(database_url())
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    import django

    django.setup()


def pytest_unconfigure(config):
    _server.close()


@pytest.fixture(scope="session")
def django_db_setup():
    from django.test.utils import (
        setup_databases,
        setup_test_environment,
        teardown_databases,
        teardown_test_environment,
    )

    # As Django's test runner and pytest-django do: vinyl then honours Django's test guards.
    setup_test_environment()
    old = setup_databases(verbosity=0, interactive=False, keepdb=False)
    yield
    teardown_databases(old, verbosity=0)
    teardown_test_environment()


@pytest.fixture
def db(django_db_setup):
    """An empty database for each test (every test table truncated before the test)."""
    from django.db import connection

    from tests.helpers import reset_tables

    reset_tables()
    yield
    connection.close()


@pytest.fixture(scope="session")
def anyio_backend():
    return "asyncio"
