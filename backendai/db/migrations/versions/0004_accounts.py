"""accounts: domains, projects, users, resource policies; keypairs linked to users

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 23:45:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "domains",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.String(length=512), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("total_resource_slots", sa.JSON(), nullable=False),
        sa.Column("allowed_vfolder_hosts", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_domains")),
    )
    op.create_table(
        "keypair_resource_policies",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("total_resource_slots", sa.JSON(), nullable=False),
        sa.Column("max_concurrent_sessions", sa.Integer(), nullable=True),
        sa.Column("max_pending_session_count", sa.Integer(), nullable=True),
        sa.Column("max_session_lifetime", sa.Integer(), nullable=False),
        sa.Column("idle_timeout", sa.Integer(), nullable=False),
        sa.Column("max_containers_per_session", sa.Integer(), nullable=False),
        sa.Column("allowed_vfolder_hosts", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_keypair_resource_policies")),
    )
    op.create_table(
        "project_resource_policies",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("max_vfolder_count", sa.Integer(), nullable=True),
        sa.Column("max_quota_scope_size", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_project_resource_policies")),
    )
    op.create_table(
        "user_resource_policies",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("max_vfolder_count", sa.Integer(), nullable=True),
        sa.Column("max_quota_scope_size", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_user_resource_policies")),
    )
    op.create_table(
        "projects",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("domain_name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.String(length=512), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("total_resource_slots", sa.JSON(), nullable=False),
        sa.Column("resource_policy", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["domain_name"], ["domains.name"], name=op.f("fk_projects_domain_name_domains")
        ),
        sa.ForeignKeyConstraint(
            ["resource_policy"],
            ["project_resource_policies.name"],
            name=op.f("fk_projects_resource_policy_project_resource_policies"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_projects")),
        sa.UniqueConstraint("domain_name", "name", name=op.f("uq_projects_domain_name_name")),
    )
    op.create_table(
        "sgroups_for_domains",
        sa.Column("scaling_group", sa.String(length=64), nullable=False),
        sa.Column("domain", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["domain"], ["domains.name"], name=op.f("fk_sgroups_for_domains_domain_domains")
        ),
        sa.ForeignKeyConstraint(
            ["scaling_group"],
            ["resource_groups.name"],
            name=op.f("fk_sgroups_for_domains_scaling_group_resource_groups"),
        ),
        sa.PrimaryKeyConstraint("scaling_group", "domain", name=op.f("pk_sgroups_for_domains")),
    )
    op.create_table(
        "users",
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column("email", sa.String(length=256), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("password", sa.String(length=256), nullable=False),
        sa.Column("need_password_change", sa.Boolean(), nullable=False),
        sa.Column("full_name", sa.String(length=128), nullable=False),
        sa.Column("description", sa.String(length=512), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("domain_name", sa.String(length=64), nullable=False),
        sa.Column("resource_policy", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["domain_name"], ["domains.name"], name=op.f("fk_users_domain_name_domains")
        ),
        sa.ForeignKeyConstraint(
            ["resource_policy"],
            ["user_resource_policies.name"],
            name=op.f("fk_users_resource_policy_user_resource_policies"),
        ),
        sa.PrimaryKeyConstraint("uuid", name=op.f("pk_users")),
        sa.UniqueConstraint("email", name=op.f("uq_users_email")),
        sa.UniqueConstraint("username", name=op.f("uq_users_username")),
    )
    op.create_table(
        "sgroups_for_projects",
        sa.Column("scaling_group", sa.String(length=64), nullable=False),
        sa.Column("project_id", sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_sgroups_for_projects_project_id_projects"),
        ),
        sa.ForeignKeyConstraint(
            ["scaling_group"],
            ["resource_groups.name"],
            name=op.f("fk_sgroups_for_projects_scaling_group_resource_groups"),
        ),
        sa.PrimaryKeyConstraint(
            "scaling_group", "project_id", name=op.f("pk_sgroups_for_projects")
        ),
    )
    op.create_table(
        "user_projects",
        sa.Column("user_uuid", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_user_projects_project_id_projects")
        ),
        sa.ForeignKeyConstraint(
            ["user_uuid"], ["users.uuid"], name=op.f("fk_user_projects_user_uuid_users")
        ),
        sa.PrimaryKeyConstraint("user_uuid", "project_id", name=op.f("pk_user_projects")),
    )
    op.create_table(
        "sgroups_for_keypairs",
        sa.Column("scaling_group", sa.String(length=64), nullable=False),
        sa.Column("access_key", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["access_key"],
            ["keypairs.access_key"],
            name=op.f("fk_sgroups_for_keypairs_access_key_keypairs"),
        ),
        sa.ForeignKeyConstraint(
            ["scaling_group"],
            ["resource_groups.name"],
            name=op.f("fk_sgroups_for_keypairs_scaling_group_resource_groups"),
        ),
        sa.PrimaryKeyConstraint(
            "scaling_group", "access_key", name=op.f("pk_sgroups_for_keypairs")
        ),
    )
    with op.batch_alter_table("keypairs") as batch:
        batch.add_column(sa.Column("user", sa.String(length=36), nullable=True))
        batch.add_column(sa.Column("resource_policy", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("rate_limit", sa.Integer(), server_default="0", nullable=False))
        batch.add_column(sa.Column("last_used", sa.Float(), nullable=True))
        batch.create_index("ix_keypairs_user", ["user"], unique=False)
        batch.create_foreign_key(op.f("fk_keypairs_user_users"), "users", ["user"], ["uuid"])
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("last_activity", sa.Float(), nullable=True))
        batch.add_column(sa.Column("domain_name", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("group_id", sa.String(length=36), nullable=True))


def downgrade() -> None:
    op.drop_table("sgroups_for_keypairs")
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("group_id")
        batch.drop_column("domain_name")
        batch.drop_column("last_activity")
    with op.batch_alter_table("keypairs") as batch:
        batch.drop_constraint(op.f("fk_keypairs_user_users"), type_="foreignkey")
        batch.drop_index("ix_keypairs_user")
        batch.drop_column("last_used")
        batch.drop_column("rate_limit")
        batch.drop_column("resource_policy")
        batch.drop_column("user")
    op.drop_table("user_projects")
    op.drop_table("sgroups_for_projects")
    op.drop_table("users")
    op.drop_table("sgroups_for_domains")
    op.drop_table("projects")
    op.drop_table("user_resource_policies")
    op.drop_table("project_resource_policies")
    op.drop_table("keypair_resource_policies")
    op.drop_table("domains")
