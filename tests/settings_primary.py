"""Settings with Django's documented empty-default layout: {"default": {}, "primary": {...}}.

tests/scenarios/test_databases.py runs a script with them against the test database of the
parent pytest process (VINYL_DATABASE_NAME).
"""

import os

from tests.settings import *  # noqa: F403
from tests.settings import database_from_url

DATABASES = {
    "default": {},
    "primary": database_from_url(os.environ["DATABASE_URL"]),
    "legacy": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
}
DATABASE_ROUTERS = ["tests.settings_primary.PrimaryRouter"]


class PrimaryRouter:
    def db_for_read(self, model, **hints):
        return "legacy" if model._meta.app_label == "legacyapp" else "primary"

    db_for_write = db_for_read

    def allow_relation(self, obj1, obj2, **hints):
        return True
