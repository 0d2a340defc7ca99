"""The test suite's SQLite alias "legacy" holds the legacyapp models, and nothing else."""


class LegacyRouter:
    def db_for_read(self, model, **hints):
        return "legacy" if model._meta.app_label == "legacyapp" else None

    db_for_write = db_for_read

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        return (db == "legacy") == (app_label == "legacyapp")
