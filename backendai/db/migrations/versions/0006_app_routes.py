"""app proxies and the routes they serve

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 12:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "app_proxies",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("api_url", sa.String(length=256), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("last_seen", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_app_proxies")),
    )
    op.create_table(
        "app_routes",
        sa.Column("session_id", sa.String(length=36), nullable=False),
        sa.Column("app", sa.String(length=64), nullable=False),
        sa.Column("proxy_id", sa.String(length=64), nullable=False),
        sa.Column("protocol", sa.String(length=8), nullable=False),
        sa.Column("target_host", sa.String(length=256), nullable=False),
        sa.Column("target_port", sa.Integer(), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("public", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("allowed_client_ips", sa.JSON(), nullable=False),
        sa.Column("url", sa.String(length=512), nullable=False, server_default=""),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"], ["sessions.id"], name=op.f("fk_app_routes_session_id_sessions")
        ),
        sa.ForeignKeyConstraint(
            ["proxy_id"], ["app_proxies.id"], name=op.f("fk_app_routes_proxy_id_app_proxies")
        ),
        sa.PrimaryKeyConstraint("session_id", "app", name=op.f("pk_app_routes")),
    )
    op.create_index("ix_app_routes_proxy_id", "app_routes", ["proxy_id"])


def downgrade() -> None:
    op.drop_index("ix_app_routes_proxy_id", table_name="app_routes")
    op.drop_table("app_routes")
    op.drop_table("app_proxies")
