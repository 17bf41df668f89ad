"""sokovan scheduler: preemptible and starts_at on sessions, session dependencies, indexes

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(
            sa.Column("preemptible", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("starts_at", sa.Float(), nullable=True))
    op.create_index("ix_sessions_status_info", "sessions", ["status_info"])
    op.create_table(
        "session_dependencies",
        sa.Column("session_id", sa.String(length=36), nullable=False),
        sa.Column("depends_on", sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name=op.f("fk_session_dependencies_session_id_sessions"),
        ),
        sa.ForeignKeyConstraint(
            ["depends_on"],
            ["sessions.id"],
            name=op.f("fk_session_dependencies_depends_on_sessions"),
        ),
        sa.PrimaryKeyConstraint("session_id", "depends_on", name=op.f("pk_session_dependencies")),
    )
    op.create_index("ix_allocations_allocated_at", "allocations", ["allocated_at"])
    op.create_index("ix_allocations_released_at", "allocations", ["released_at"])


def downgrade() -> None:
    op.drop_index("ix_allocations_released_at", table_name="allocations")
    op.drop_index("ix_allocations_allocated_at", table_name="allocations")
    op.drop_table("session_dependencies")
    op.drop_index("ix_sessions_status_info", table_name="sessions")
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("starts_at")
        batch.drop_column("preemptible")
