"""Django settings of the demo project; the database comes from ``DATABASE_URL``."""

import os
from urllib.parse import unquote, urlsplit

if "DATABASE_URL" not in os.environ:
    raise RuntimeError(
        "demo.settings needs DATABASE_URL (postgresql://user@host:port/dbname); "
        "`python -m demo` sets it for you."
    )

_url = urlsplit(os.environ["DATABASE_URL"])
# Both implementations get a pool of the same size: vinyl's async pool ("VINYL") for the vinyl
# views, Django's own psycopg pool (OPTIONS["pool"], Django >= 5.1) for the a-method views, whose
# queries run in worker threads.
POOL_SIZE = int(os.environ.get("DEMO_POOL_SIZE", "16"))

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(_url.path.lstrip("/")) or "postgres",
        "USER": unquote(_url.username or ""),
        "PASSWORD": unquote(_url.password or ""),
        "HOST": _url.hostname or "",
        "PORT": str(_url.port or ""),
        "OPTIONS": {"pool": {"min_size": 2, "max_size": POOL_SIZE, "timeout": 30}},
        "VINYL": {"min_size": 2, "max_size": POOL_SIZE, "timeout": 30},
        "TEST": {"NAME": f"vinyl_demo_test_{os.getpid()}"},
    }
}
INSTALLED_APPS = ["demo.food"]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "demo.urls"
USE_TZ = True
TIME_ZONE = "UTC"
SECRET_KEY = "vinyl-demo-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    # 4xx answers (409 out of stock) are part of the workload, not warnings worth printing.
    "loggers": {"django.request": {"handlers": ["console"], "level": "ERROR"}},
}
# vinyl's structural query cache is on by default; VINYL_QUERY_CACHE=0 switches it off (to compare).
VINYL_QUERY_CACHE = os.environ.get("VINYL_QUERY_CACHE", "1") != "0"
