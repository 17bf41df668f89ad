"""The manager's schema, as SQLAlchemy Core tables.

The database is the single source of truth.  Occupancy of an agent is the sum
of its live ``allocations`` rows (``released_at IS NULL``), never a counter.
Times are UNIX epoch seconds (float): portable across SQLite and PostgreSQL
and cheap to compare in the coordinator loops.

Any change here needs a new Alembic revision in ``migrations/versions``; a
test compares the migrated schema against this metadata.
"""

from __future__ import annotations

import sqlalchemy as sa

__all__ = [
    "agents",
    "allocations",
    "app_proxies",
    "app_routes",
    "domains",
    "image_aliases",
    "images",
    "kernels",
    "keypair_resource_policies",
    "keypairs",
    "metadata",
    "project_resource_policies",
    "projects",
    "registries",
    "resource_groups",
    "session_dependencies",
    "session_history",
    "sessions",
    "sgroups_for_domains",
    "sgroups_for_keypairs",
    "sgroups_for_projects",
    "user_projects",
    "user_resource_policies",
    "users",
    "vfolder_invitations",
    "vfolder_permissions",
    "vfolders",
]

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# -- accounts: domains > projects and users > keypairs; resource policies -------------

# What one keypair may hold.  None or empty: unlimited; the durations (seconds) and
# max_containers_per_session: 0 is unlimited.
keypair_resource_policies = sa.Table(
    "keypair_resource_policies",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("total_resource_slots", sa.JSON, nullable=False, default=dict),
    sa.Column("max_concurrent_sessions", sa.Integer, nullable=True),
    sa.Column("max_pending_session_count", sa.Integer, nullable=True),
    sa.Column("max_session_lifetime", sa.Integer, nullable=False, default=0),
    sa.Column("idle_timeout", sa.Integer, nullable=False, default=0),
    sa.Column("max_containers_per_session", sa.Integer, nullable=False, default=0),
    sa.Column("allowed_vfolder_hosts", sa.JSON, nullable=False, default=dict),
    sa.Column("created_at", sa.Float, nullable=False),
)


def _folder_policy(name: str) -> sa.Table:
    """Folder limits of a user or a project.  None: unlimited."""
    return sa.Table(
        name,
        metadata,
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("max_vfolder_count", sa.Integer, nullable=True),
        sa.Column("max_quota_scope_size", sa.BigInteger, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
    )


user_resource_policies = _folder_policy("user_resource_policies")
project_resource_policies = _folder_policy("project_resource_policies")

domains = sa.Table(
    "domains",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("description", sa.String(512), nullable=False, default=""),
    sa.Column("is_active", sa.Boolean, nullable=False, default=True),
    sa.Column("total_resource_slots", sa.JSON, nullable=False, default=dict),
    sa.Column("allowed_vfolder_hosts", sa.JSON, nullable=False, default=dict),
    sa.Column("created_at", sa.Float, nullable=False),
)

# Backend.AI calls these "groups"; a project belongs to one domain.
projects = sa.Table(
    "projects",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("domain_name", sa.String(64), sa.ForeignKey("domains.name"), nullable=False),
    sa.Column("description", sa.String(512), nullable=False, default=""),
    sa.Column("is_active", sa.Boolean, nullable=False, default=True),
    sa.Column("total_resource_slots", sa.JSON, nullable=False, default=dict),
    sa.Column(
        "resource_policy",
        sa.String(64),
        sa.ForeignKey("project_resource_policies.name"),
        nullable=False,
    ),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.UniqueConstraint("domain_name", "name"),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("uuid", sa.String(36), primary_key=True),
    sa.Column("email", sa.String(256), nullable=False, unique=True),
    sa.Column("username", sa.String(64), nullable=False, unique=True),
    # scrypt$N$r$p$salt$hash (see backendai.manager.passwords); never logged.
    sa.Column("password", sa.String(256), nullable=False),
    sa.Column("need_password_change", sa.Boolean, nullable=False, default=False),
    sa.Column("full_name", sa.String(128), nullable=False, default=""),
    sa.Column("description", sa.String(512), nullable=False, default=""),
    sa.Column("role", sa.String(32), nullable=False),  # superadmin | admin | user
    sa.Column("status", sa.String(16), nullable=False),  # active | inactive
    sa.Column("domain_name", sa.String(64), sa.ForeignKey("domains.name"), nullable=False),
    sa.Column(
        "resource_policy",
        sa.String(64),
        sa.ForeignKey("user_resource_policies.name"),
        nullable=False,
    ),
    sa.Column("created_at", sa.Float, nullable=False),
)

user_projects = sa.Table(
    "user_projects",
    metadata,
    sa.Column("user_uuid", sa.String(36), sa.ForeignKey("users.uuid"), primary_key=True),
    sa.Column("project_id", sa.String(36), sa.ForeignKey("projects.id"), primary_key=True),
)

# A keypair signs requests for its user.  ``user_id`` is the user's email (Backend.AI's
# name for it); ``user`` links the row.  Keypairs made before accounts existed have no
# user: their own ``role`` counts, in the default domain.  ``resource_policy`` names a
# keypair_resource_policies row (None: no per-keypair limits).
keypairs = sa.Table(
    "keypairs",
    metadata,
    sa.Column("access_key", sa.String(64), primary_key=True),
    sa.Column("secret_key", sa.String(128), nullable=False),
    sa.Column("user_id", sa.String(256), nullable=False),
    sa.Column("role", sa.String(32), nullable=False),  # superadmin | admin | user
    sa.Column("is_active", sa.Boolean, nullable=False, default=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("user", sa.String(36), sa.ForeignKey("users.uuid"), nullable=True),
    sa.Column("resource_policy", sa.String(64), nullable=True),
    # Requests per rate-limit window (0: unlimited).
    sa.Column("rate_limit", sa.Integer, nullable=False, default=0, server_default="0"),
    sa.Column("last_used", sa.Float, nullable=True),
)
sa.Index("ix_keypairs_user", keypairs.c.user)

resource_groups = sa.Table(
    "resource_groups",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("description", sa.String(512), nullable=False, default=""),
    sa.Column("is_active", sa.Boolean, nullable=False, default=True),
    sa.Column("scheduler", sa.String(64), nullable=False, default="fifo"),
    sa.Column("agent_selector", sa.String(64), nullable=False, default="first-fit"),
    sa.Column("options", sa.JSON, nullable=False, default=dict),
    sa.Column("created_at", sa.Float, nullable=False),
)

# Which resource groups a domain, a project or a keypair may use.
sgroups_for_domains = sa.Table(
    "sgroups_for_domains",
    metadata,
    sa.Column(
        "scaling_group", sa.String(64), sa.ForeignKey("resource_groups.name"), primary_key=True
    ),
    sa.Column("domain", sa.String(64), sa.ForeignKey("domains.name"), primary_key=True),
)

sgroups_for_projects = sa.Table(
    "sgroups_for_projects",
    metadata,
    sa.Column(
        "scaling_group", sa.String(64), sa.ForeignKey("resource_groups.name"), primary_key=True
    ),
    sa.Column("project_id", sa.String(36), sa.ForeignKey("projects.id"), primary_key=True),
)

sgroups_for_keypairs = sa.Table(
    "sgroups_for_keypairs",
    metadata,
    sa.Column(
        "scaling_group", sa.String(64), sa.ForeignKey("resource_groups.name"), primary_key=True
    ),
    sa.Column("access_key", sa.String(64), sa.ForeignKey("keypairs.access_key"), primary_key=True),
)

agents = sa.Table(
    "agents",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),  # ALIVE | LOST | TERMINATED
    sa.Column("status_changed", sa.Float, nullable=False),
    sa.Column("rpc_addr", sa.String(256), nullable=False),
    sa.Column(
        "resource_group", sa.String(64), sa.ForeignKey("resource_groups.name"), nullable=False
    ),
    sa.Column("architecture", sa.String(32), nullable=False),
    sa.Column("backend", sa.String(32), nullable=False),
    sa.Column("capacity", sa.JSON, nullable=False),  # ResourceSlots.to_json()
    sa.Column("images", sa.JSON, nullable=False),  # [image name, ...]
    sa.Column("hardware", sa.JSON, nullable=False, default=dict),
    sa.Column("version", sa.String(32), nullable=False),
    sa.Column("first_contact", sa.Float, nullable=False),
    sa.Column("last_heartbeat", sa.Float, nullable=False),
)

images = sa.Table(
    "images",
    metadata,
    sa.Column("name", sa.String(256), primary_key=True),  # canonical "repo:tag"
    sa.Column("architecture", sa.String(32), primary_key=True),
    sa.Column("digest", sa.String(128), nullable=False, default=""),
    sa.Column("size_bytes", sa.BigInteger, nullable=False, default=0),
    sa.Column("labels", sa.JSON, nullable=False, default=dict),
    sa.Column("last_seen", sa.Float, nullable=False),
    # The registry it comes from (registries.name); "" for images only agents reported.
    sa.Column("registry", sa.String(64), nullable=False, default="", server_default=""),
    sa.Column("tag", sa.String(128), nullable=False, default="", server_default=""),
)
sa.Index("ix_images_registry", images.c.registry)

# Container registries an admin registered (Docker Registry v2 or a Harbor v2 project).
# The password is stored as given (the agents need it to pull); it never leaves the
# manager except in a create spec to an agent, and never reaches a log.
registries = sa.Table(
    "registries",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("url", sa.String(512), nullable=False),
    sa.Column("type", sa.String(16), nullable=False),  # docker | harbor
    sa.Column("project", sa.String(256), nullable=False, default=""),
    sa.Column("username", sa.String(256), nullable=False, default=""),
    sa.Column("password", sa.String(1024), nullable=False, default=""),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("last_scanned", sa.Float, nullable=True),
)

# Other names users may give for an image (its canonical name is images.name).
image_aliases = sa.Table(
    "image_aliases",
    metadata,
    sa.Column("alias", sa.String(256), primary_key=True),
    sa.Column("target", sa.String(256), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("access_key", sa.String(64), sa.ForeignKey("keypairs.access_key"), nullable=False),
    sa.Column("session_type", sa.String(16), nullable=False),  # interactive | batch
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("status_info", sa.String(64), nullable=True),  # the reason
    sa.Column("status_changed", sa.Float, nullable=False),
    sa.Column("image", sa.String(256), nullable=False),
    sa.Column("architecture", sa.String(32), nullable=False),
    sa.Column(
        "resource_group", sa.String(64), sa.ForeignKey("resource_groups.name"), nullable=False
    ),
    sa.Column("cluster_mode", sa.String(16), nullable=False),
    sa.Column("cluster_size", sa.Integer, nullable=False),
    sa.Column("requested_slots", sa.JSON, nullable=False),  # per kernel
    sa.Column("environ", sa.JSON, nullable=False, default=dict),
    # Folder mounts: [{name, folder_id, host_path, container_path, mode}]; NULL: none.
    sa.Column("mounts", sa.JSON, nullable=True),
    sa.Column("tag", sa.String(256), nullable=True),
    sa.Column("startup_command", sa.Text, nullable=True),
    sa.Column("priority", sa.Integer, nullable=False, default=0),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("terminated_at", sa.Float, nullable=True),
    sa.Column("exit_code", sa.Integer, nullable=True),
    # A higher-priority session may stop this one to make room (group option preemption).
    sa.Column("preemptible", sa.Boolean, nullable=False, default=False, server_default=sa.false()),
    # A batch session does not start before this time (POST /session startsAt).
    sa.Column("starts_at", sa.Float, nullable=True),
    # The last code execution, file or stream use (a keypair policy's idle_timeout counts from it).
    sa.Column("last_activity", sa.Float, nullable=True),
    # The owner's domain and the project (group) the session is for; None: made before accounts.
    sa.Column("domain_name", sa.String(64), nullable=True),
    sa.Column("group_id", sa.String(36), nullable=True),
)
# A live session name is unique per owner; terminal sessions free their name.
sa.Index(
    "uq_sessions_live_name",
    sessions.c.access_key,
    sessions.c.name,
    unique=True,
    sqlite_where=sessions.c.terminated_at.is_(None),
    postgresql_where=sessions.c.terminated_at.is_(None),
)
sa.Index("ix_sessions_status", sessions.c.status)
# Finds the few sessions ended for a given reason (preempted sessions to requeue).
sa.Index("ix_sessions_status_info", sessions.c.status_info)

# A session starts only after each session it depends on finished successfully.
session_dependencies = sa.Table(
    "session_dependencies",
    metadata,
    sa.Column("session_id", sa.String(36), sa.ForeignKey("sessions.id"), primary_key=True),
    sa.Column("depends_on", sa.String(36), sa.ForeignKey("sessions.id"), primary_key=True),
)

kernels = sa.Table(
    "kernels",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("session_id", sa.String(36), sa.ForeignKey("sessions.id"), nullable=False),
    sa.Column("cluster_role", sa.String(16), nullable=False),  # main | sub
    sa.Column("cluster_idx", sa.Integer, nullable=False),
    sa.Column("agent_id", sa.String(64), sa.ForeignKey("agents.id"), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("status_info", sa.String(64), nullable=True),
    sa.Column("status_changed", sa.Float, nullable=False),
    sa.Column("image", sa.String(256), nullable=False),
    sa.Column("requested_slots", sa.JSON, nullable=False),
    sa.Column("container_id", sa.String(128), nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    # Which manager process drives this kernel's current transition, and until when.
    sa.Column("lease_owner", sa.String(64), nullable=True),
    sa.Column("lease_until", sa.Float, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("started_at", sa.Float, nullable=True),
    sa.Column("terminated_at", sa.Float, nullable=True),
    sa.Column("exit_code", sa.Integer, nullable=True),
)
sa.Index("ix_kernels_session_id", kernels.c.session_id)
sa.Index("ix_kernels_status", kernels.c.status)
sa.Index("ix_kernels_agent_id", kernels.c.agent_id)

allocations = sa.Table(
    "allocations",
    metadata,
    sa.Column("kernel_id", sa.String(36), sa.ForeignKey("kernels.id"), primary_key=True),
    sa.Column("agent_id", sa.String(64), sa.ForeignKey("agents.id"), nullable=False),
    sa.Column("slots", sa.JSON, nullable=False),
    sa.Column("allocated_at", sa.Float, nullable=False),
    sa.Column("released_at", sa.Float, nullable=True),
)
sa.Index("ix_allocations_agent_live", allocations.c.agent_id, allocations.c.released_at)
# The newest allocation (round-robin cursor) and recent ones (fair-share usage history).
sa.Index("ix_allocations_allocated_at", allocations.c.allocated_at)
sa.Index("ix_allocations_released_at", allocations.c.released_at)

session_history = sa.Table(
    "session_history",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("session_id", sa.String(36), sa.ForeignKey("sessions.id"), nullable=False),
    sa.Column("kernel_id", sa.String(36), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("reason", sa.String(64), nullable=True),
    sa.Column("detail", sa.Text, nullable=True),
    sa.Column("at", sa.Float, nullable=False),
)
sa.Index("ix_session_history_session_id", session_history.c.session_id)

# Virtual folders.  ``user_id`` is the owner's keypairs.user_id (the user's email) and
# ``project`` a project name within the owner's domain.
vfolders = sa.Table(
    "vfolders",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("host", sa.String(128), nullable=False),  # the storage volume
    sa.Column("ownership_type", sa.String(16), nullable=False),  # user | group
    sa.Column("user_id", sa.String(256), nullable=True),
    sa.Column("project", sa.String(64), nullable=True),
    sa.Column("usage_mode", sa.String(16), nullable=False, default="general"),
    sa.Column("permission", sa.String(2), nullable=False, default="rw"),  # for project members
    sa.Column("cloneable", sa.Boolean, nullable=False, default=False),
    sa.Column("quota_bytes", sa.BigInteger, nullable=True),
    sa.Column("status", sa.String(16), nullable=False, default="ready"),
    sa.Column("created_at", sa.Float, nullable=False),
)
# A name is unique per owner (NULLs are distinct: user and project folders do not clash).
sa.Index("uq_vfolders_user_id_name", vfolders.c.user_id, vfolders.c.name, unique=True)
sa.Index("uq_vfolders_project_name", vfolders.c.project, vfolders.c.name, unique=True)

vfolder_permissions = sa.Table(
    "vfolder_permissions",
    metadata,
    sa.Column("vfolder_id", sa.String(36), sa.ForeignKey("vfolders.id"), primary_key=True),
    sa.Column("user_id", sa.String(256), primary_key=True),
    sa.Column("permission", sa.String(2), nullable=False),  # ro | rw | wd
)

vfolder_invitations = sa.Table(
    "vfolder_invitations",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("vfolder_id", sa.String(36), sa.ForeignKey("vfolders.id"), nullable=False),
    sa.Column("inviter", sa.String(256), nullable=False),
    sa.Column("invitee", sa.String(256), nullable=False),
    sa.Column("permission", sa.String(2), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # pending | accepted | rejected | canceled
    sa.Column("created_at", sa.Float, nullable=False),
)
sa.Index("ix_vfolder_invitations_invitee", vfolder_invitations.c.invitee)
# App proxies that announced themselves (each serves some apps; several per cluster).
app_proxies = sa.Table(
    "app_proxies",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("api_url", sa.String(256), nullable=False),
    sa.Column("mode", sa.String(16), nullable=False),  # wildcard | port
    sa.Column("last_seen", sa.Float, nullable=False),
)

# The apps of running sessions and the proxy serving each; a proxy rebuilds its table from these.
app_routes = sa.Table(
    "app_routes",
    metadata,
    sa.Column("session_id", sa.String(36), sa.ForeignKey("sessions.id"), primary_key=True),
    sa.Column("app", sa.String(64), primary_key=True),
    sa.Column("proxy_id", sa.String(64), sa.ForeignKey("app_proxies.id"), nullable=False),
    sa.Column("protocol", sa.String(8), nullable=False),  # http | tcp
    sa.Column("target_host", sa.String(256), nullable=False),
    sa.Column("target_port", sa.Integer, nullable=False),
    sa.Column("owner", sa.String(64), nullable=False),  # access key that may use the app
    sa.Column("public", sa.Boolean, nullable=False, default=False, server_default=sa.false()),
    sa.Column("allowed_client_ips", sa.JSON, nullable=False, default=list),
    sa.Column("url", sa.String(512), nullable=False, default="", server_default=""),
    sa.Column("created_at", sa.Float, nullable=False),
    # Reached through the agent's forward to a kernel without a reachable network.
    sa.Column("forwarded", sa.Boolean, nullable=False, default=False, server_default=sa.false()),
)
sa.Index("ix_app_routes_proxy_id", app_routes.c.proxy_id)
