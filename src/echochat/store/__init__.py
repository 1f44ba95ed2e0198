"""The only package that speaks SQL: tables, queries and migrations.

Public entry points: :class:`Database` (engine and transactions), :mod:`.migrate` (Alembic,
schema state) and one query module per concern (``users``, ``audit``...). Query functions
whose name ends in ``_txn`` take an open connection and run inside the caller's transaction.
"""

from echochat.store.db import Database, DatabaseUnavailable

__all__ = ["Database", "DatabaseUnavailable"]
