"""app routes reached through an agent's forward

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28 02:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("app_routes") as batch:
        batch.add_column(
            sa.Column("forwarded", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("app_routes") as batch:
        batch.drop_column("forwarded")
