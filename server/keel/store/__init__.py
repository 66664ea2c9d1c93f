"""The session store (docs/explanation/sessions.md): SQLite at ``<workspace>/.keel/keel.db``."""

from keel.store.db import MIGRATIONS, SqliteStore, store_path

__all__ = ["MIGRATIONS", "SqliteStore", "store_path"]
