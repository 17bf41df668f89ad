"""container registries, image catalog columns, image aliases

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 21:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "registries",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("url", sa.String(length=512), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("project", sa.String(length=256), nullable=False),
        sa.Column("username", sa.String(length=256), nullable=False),
        sa.Column("password", sa.String(length=1024), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("last_scanned", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_registries")),
    )
    op.create_table(
        "image_aliases",
        sa.Column("alias", sa.String(length=256), nullable=False),
        sa.Column("target", sa.String(length=256), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("alias", name=op.f("pk_image_aliases")),
    )
    # Existing rows came from agents' reports: no registry, tag unknown ("").
    with op.batch_alter_table("images") as batch:
        batch.add_column(
            sa.Column("registry", sa.String(length=64), nullable=False, server_default="")
        )
        batch.add_column(sa.Column("tag", sa.String(length=128), nullable=False, server_default=""))
    op.create_index("ix_images_registry", "images", ["registry"])


def downgrade() -> None:
    op.drop_index("ix_images_registry", table_name="images")
    with op.batch_alter_table("images") as batch:
        batch.drop_column("tag")
        batch.drop_column("registry")
    op.drop_table("image_aliases")
    op.drop_table("registries")
