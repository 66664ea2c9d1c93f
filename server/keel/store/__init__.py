"""The session store (docs/explanation/sessions.md): SQLite at ``<workspace>/.keel/keel.db``."""

from keel.store.db import MIGRATIONS, SqliteSessionRecords, SqliteStore, store_path

__all__ = ["MIGRATIONS", "SqliteSessionRecords", "SqliteStore", "store_path"]
