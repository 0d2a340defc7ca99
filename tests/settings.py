"""Django settings for vinyl's test suite; the database comes from DATABASE_URL."""

import os
from urllib.parse import unquote, urlsplit

from psycopg import IsolationLevel


def database_from_url(url: str) -> dict:
    parts = urlsplit(url)
    return {
        "ENGINE": "django.db.backends.postgresql",
        # VINYL_DATABASE_NAME: a subprocess of a test run works on that run's test database.
        "NAME": os.environ.get("VINYL_DATABASE_NAME")
        or unquote(parts.path.lstrip("/"))
        or "postgres",
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
        "VINYL": {"min_size": 1, "max_size": 10, "timeout": 10},
        "TEST": {"NAME": f"vinyl_test_{os.getpid()}"},
    }


DATABASES = {"default": database_from_url(os.environ["DATABASE_URL"])}
# The same test database, with a different isolation level (tests/scenarios/test_transactions.py).
DATABASES["serializable"] = {
    **database_from_url(os.environ["DATABASE_URL"]),
    "OPTIONS": {"isolation_level": IsolationLevel.SERIALIZABLE},
    "TEST": {"MIRROR": "default"},
}
# The same test database with a pool of its own (tests/reliability: load, faults, pool timeout).
DATABASES["reliability"] = {
    **database_from_url(os.environ["DATABASE_URL"]),
    "VINYL": {"min_size": 2, "max_size": 10, "timeout": 30},
    "CONN_HEALTH_CHECKS": True,  # idle connections killed on the server are replaced on checkout
    "TEST": {"MIRROR": "default"},
}
# The same test database with server-side binding and every statement prepared at its first
# execution (tests/scenarios/test_server_binding.py).
DATABASES["prepared"] = {
    **database_from_url(os.environ["DATABASE_URL"]),
    "OPTIONS": {"server_side_binding": True, "prepare_threshold": 0},
    "TEST": {"MIRROR": "default"},
}
# A database that is not PostgreSQL next to the others (tests/scenarios/test_databases.py):
# async mode leaves it alone. The legacyapp models live there, and only they (tests.routers).
DATABASES["legacy"] = {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}
DATABASE_ROUTERS = ["tests.routers.LegacyRouter"]
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.postgres",
    "tests.testapp",
    "tests.legacyapp",
]
USE_TZ = True
TIME_ZONE = "Europe/Amsterdam"
SECRET_KEY = "vinyl-tests"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# The structural query cache is on by default; CI runs the suite once more with VINYL_QUERY_CACHE=0.
VINYL_QUERY_CACHE = os.environ.get("VINYL_QUERY_CACHE", "1") != "0"
