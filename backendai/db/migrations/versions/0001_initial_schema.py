"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-27 20:36:31.954815
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "images",
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("architecture", sa.String(length=32), nullable=False),
        sa.Column("digest", sa.String(length=128), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("last_seen", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name", "architecture", name=op.f("pk_images")),
    )
    op.create_table(
        "keypairs",
        sa.Column("access_key", sa.String(length=64), nullable=False),
        sa.Column("secret_key", sa.String(length=128), nullable=False),
        sa.Column("user_id", sa.String(length=256), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("access_key", name=op.f("pk_keypairs")),
    )
    op.create_table(
        "resource_groups",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.String(length=512), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("scheduler", sa.String(length=64), nullable=False),
        sa.Column("agent_selector", sa.String(length=64), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_resource_groups")),
    )
    op.create_table(
        "agents",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_changed", sa.Float(), nullable=False),
        sa.Column("rpc_addr", sa.String(length=256), nullable=False),
        sa.Column("resource_group", sa.String(length=64), nullable=False),
        sa.Column("architecture", sa.String(length=32), nullable=False),
        sa.Column("backend", sa.String(length=32), nullable=False),
        sa.Column("capacity", sa.JSON(), nullable=False),
        sa.Column("images", sa.JSON(), nullable=False),
        sa.Column("hardware", sa.JSON(), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("first_contact", sa.Float(), nullable=False),
        sa.Column("last_heartbeat", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["resource_group"],
            ["resource_groups.name"],
            name=op.f("fk_agents_resource_group_resource_groups"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agents")),
    )
    op.create_table(
        "sessions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("access_key", sa.String(length=64), nullable=False),
        sa.Column("session_type", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_info", sa.String(length=64), nullable=True),
        sa.Column("status_changed", sa.Float(), nullable=False),
        sa.Column("image", sa.String(length=256), nullable=False),
        sa.Column("architecture", sa.String(length=32), nullable=False),
        sa.Column("resource_group", sa.String(length=64), nullable=False),
        sa.Column("cluster_mode", sa.String(length=16), nullable=False),
        sa.Column("cluster_size", sa.Integer(), nullable=False),
        sa.Column("requested_slots", sa.JSON(), nullable=False),
        sa.Column("environ", sa.JSON(), nullable=False),
        sa.Column("tag", sa.String(length=256), nullable=True),
        sa.Column("startup_command", sa.Text(), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("terminated_at", sa.Float(), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["access_key"], ["keypairs.access_key"], name=op.f("fk_sessions_access_key_keypairs")
        ),
        sa.ForeignKeyConstraint(
            ["resource_group"],
            ["resource_groups.name"],
            name=op.f("fk_sessions_resource_group_resource_groups"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sessions")),
    )
    op.create_index("ix_sessions_status", "sessions", ["status"])
    # A live session name is unique per owner; terminal sessions free their name.
    op.create_index(
        "uq_sessions_live_name",
        "sessions",
        ["access_key", "name"],
        unique=True,
        sqlite_where=sa.text("terminated_at IS NULL"),
        postgresql_where=sa.text("terminated_at IS NULL"),
    )
    op.create_table(
        "kernels",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("session_id", sa.String(length=36), nullable=False),
        sa.Column("cluster_role", sa.String(length=16), nullable=False),
        sa.Column("cluster_idx", sa.Integer(), nullable=False),
        sa.Column("agent_id", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_info", sa.String(length=64), nullable=True),
        sa.Column("status_changed", sa.Float(), nullable=False),
        sa.Column("image", sa.String(length=256), nullable=False),
        sa.Column("requested_slots", sa.JSON(), nullable=False),
        sa.Column("container_id", sa.String(length=128), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_until", sa.Float(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=True),
        sa.Column("terminated_at", sa.Float(), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.id"], name=op.f("fk_kernels_agent_id_agents")
        ),
        sa.ForeignKeyConstraint(
            ["session_id"], ["sessions.id"], name=op.f("fk_kernels_session_id_sessions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kernels")),
    )
    op.create_index("ix_kernels_agent_id", "kernels", ["agent_id"])
    op.create_index("ix_kernels_session_id", "kernels", ["session_id"])
    op.create_index("ix_kernels_status", "kernels", ["status"])
    op.create_table(
        "session_history",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("session_id", sa.String(length=36), nullable=False),
        sa.Column("kernel_id", sa.String(length=36), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"], ["sessions.id"], name=op.f("fk_session_history_session_id_sessions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_session_history")),
    )
    op.create_index("ix_session_history_session_id", "session_history", ["session_id"])
    op.create_table(
        "allocations",
        sa.Column("kernel_id", sa.String(length=36), nullable=False),
        sa.Column("agent_id", sa.String(length=64), nullable=False),
        sa.Column("slots", sa.JSON(), nullable=False),
        sa.Column("allocated_at", sa.Float(), nullable=False),
        sa.Column("released_at", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.id"], name=op.f("fk_allocations_agent_id_agents")
        ),
        sa.ForeignKeyConstraint(
            ["kernel_id"], ["kernels.id"], name=op.f("fk_allocations_kernel_id_kernels")
        ),
        sa.PrimaryKeyConstraint("kernel_id", name=op.f("pk_allocations")),
    )
    op.create_index("ix_allocations_agent_live", "allocations", ["agent_id", "released_at"])


def downgrade() -> None:
    # Dropping a table drops its indexes; children before parents.
    for table in (
        "allocations",
        "session_history",
        "kernels",
        "sessions",
        "agents",
        "resource_groups",
        "keypairs",
        "images",
    ):
        op.drop_table(table)
