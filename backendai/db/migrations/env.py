"""Alembic environment: runs on the connection handed in by ``backendai.db.migrate``."""

from __future__ import annotations

from alembic import context

from backendai.db.tables import metadata

conn = context.config.attributes.get("connection")
if conn is None:
    raise RuntimeError("run migrations through backendai.db.migrate, which passes a connection")
context.configure(
    connection=conn,
    target_metadata=metadata,
    render_as_batch=conn.dialect.name == "sqlite",
    transactional_ddl=True,
)
context.run_migrations()
