"""A plain Django model in the SQLite database "legacy" (see tests/routers.py)."""

from django.db import models


class LegacyNote(models.Model):
    text = models.CharField(max_length=100)
