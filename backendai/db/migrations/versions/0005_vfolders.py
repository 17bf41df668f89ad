"""virtual folders: vfolders, vfolder_permissions, vfolder_invitations, sessions.mounts

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 00:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vfolders",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("host", sa.String(length=128), nullable=False),
        sa.Column("ownership_type", sa.String(length=16), nullable=False),
        sa.Column("user_id", sa.String(length=256), nullable=True),
        sa.Column("project", sa.String(length=64), nullable=True),
        sa.Column("usage_mode", sa.String(length=16), nullable=False),
        sa.Column("permission", sa.String(length=2), nullable=False),
        sa.Column("cloneable", sa.Boolean(), nullable=False),
        sa.Column("quota_bytes", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vfolders")),
    )
    op.create_index("uq_vfolders_user_id_name", "vfolders", ["user_id", "name"], unique=True)
    op.create_index("uq_vfolders_project_name", "vfolders", ["project", "name"], unique=True)
    op.create_table(
        "vfolder_permissions",
        sa.Column("vfolder_id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=256), nullable=False),
        sa.Column("permission", sa.String(length=2), nullable=False),
        sa.ForeignKeyConstraint(
            ["vfolder_id"], ["vfolders.id"], name=op.f("fk_vfolder_permissions_vfolder_id_vfolders")
        ),
        sa.PrimaryKeyConstraint("vfolder_id", "user_id", name=op.f("pk_vfolder_permissions")),
    )
    op.create_table(
        "vfolder_invitations",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("vfolder_id", sa.String(length=36), nullable=False),
        sa.Column("inviter", sa.String(length=256), nullable=False),
        sa.Column("invitee", sa.String(length=256), nullable=False),
        sa.Column("permission", sa.String(length=2), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["vfolder_id"], ["vfolders.id"], name=op.f("fk_vfolder_invitations_vfolder_id_vfolders")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vfolder_invitations")),
    )
    op.create_index("ix_vfolder_invitations_invitee", "vfolder_invitations", ["invitee"])
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("mounts", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("mounts")
    op.drop_index("ix_vfolder_invitations_invitee", table_name="vfolder_invitations")
    op.drop_table("vfolder_invitations")
    op.drop_table("vfolder_permissions")
    op.drop_index("uq_vfolders_project_name", table_name="vfolders")
    op.drop_index("uq_vfolders_user_id_name", table_name="vfolders")
    op.drop_table("vfolders")
