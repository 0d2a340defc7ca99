"""Settings for Django's own test suite run by the harness (``runtests.py --settings``).

Django's ``tests/test_sqlite.py`` with PostgreSQL from ``DATABASE_URL`` for its two aliases and
the harness's test runner. Test database names carry the process id, so runs of several
checkouts on one server do not collide.
"""

import os

from tests.settings import database_from_url

_url = os.environ["DATABASE_URL"]
_run = os.environ.get("VINYL_SUITE_RUN_ID", str(os.getpid()))


def _database(name: str) -> dict:
    db = database_from_url(_url)
    db["TEST"] = {"NAME": f"djsuite_{_run}_{name}"}
    return db


DATABASES = {"default": _database("default"), "other": _database("other")}
SECRET_KEY = "django_tests_secret_key"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
USE_TZ = False
TEST_RUNNER = "tests.django_suite.runner.HarnessRunner"
VINYL_QUERY_CACHE = os.environ.get("VINYL_QUERY_CACHE", "1") != "0"
