"""Alembic environment: EchoChat always hands in an open connection (see store/migrate.py)."""

from __future__ import annotations

from alembic import context

from echochat.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with 'echochat db upgrade', not the alembic command")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    transaction_per_migration=True,
)
with context.begin_transaction():
    context.run_migrations()
