"""What the session API does, apart from HTTP: validate, enqueue, wait, destroy, describe.

Validation happens before anything is written: a bad request changes nothing.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
import trio

from ..db.tables import agents, kernels, resource_groups, sessions
from ..errors import (
    Conflict,
    DatabaseError,
    InsufficientResources,
    InvalidAPIParameters,
    SessionNotFound,
)
from ..sched import ResourceSlots, format_bytes, parse_bytes
from . import catalog, repo
from .admission import admit
from .context import ManagerContext, publish_changes
from .launcher import fail_session
from .mounts import MountRequest, parse_mounts
from .repo import StatusChange
from .sched_request import (
    SchedulingRequest,
    known_slots,
    parse_scheduling_fields,
    resolve_dependencies,
    store_dependencies,
)
from .states import TERMINAL

__all__ = [
    "SessionRequest",
    "create_session",
    "destroy_session",
    "parse_create_request",
    "resolve_session",
]

log = logging.getLogger(__name__)
_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{3,63}$")
DEFAULT_CPU = "1"
DEFAULT_MEM = "1g"


@dataclass(frozen=True)
class SessionRequest:
    image: str
    name: str
    session_type: str
    resource_group: str
    cluster_mode: str
    cluster_size: int
    resources: Mapping[str, Any]
    environ: Mapping[str, str]
    tag: str | None
    startup_command: str | None
    enqueue_only: bool
    max_wait: float
    reuse: bool
    architecture: str | None
    priority: int
    # The project (``group``: a name or an id) and domain the session is for; None: the owner's.
    project: str | None = None
    domain: str | None = None
    # preemptible, dependencies, startsAt (see sched_request)
    scheduling: SchedulingRequest = field(default_factory=SchedulingRequest)
    # Folder mounts as asked (config.mounts, mount_map, mount_options) and as resolved for
    # the caller (host path, container path, mode; see manager.mounts).
    mount_requests: tuple[MountRequest, ...] = ()
    mounts: tuple[Mapping[str, Any], ...] = ()


def _opt(body: Mapping[str, Any], *names: str, default: Any = None) -> Any:
    for n in names:
        if n in body and body[n] is not None:
            return body[n]
    return default


def _typed(value: Any, kind: type | tuple[type, ...], field: str, expected: str) -> Any:
    if isinstance(value, bool) and kind is not bool:
        raise InvalidAPIParameters(f"{field}: invalid value {value!r}; expected {expected}")
    if not isinstance(value, kind):
        raise InvalidAPIParameters(f"{field}: invalid value {value!r}; expected {expected}")
    return value


def _flag(value: Any, field: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in {"true", "false", "1", "0", "yes", "no"}:
        return value.lower() in {"true", "1", "yes"}
    raise InvalidAPIParameters(f"{field}: invalid value {value!r}; expected true or false")


def parse_create_request(body: Any) -> SessionRequest:
    """Check a ``POST /session`` body (the Backend.AI v7 dialect) field by field."""
    if not isinstance(body, dict):
        raise InvalidAPIParameters(f"request body must be a JSON object, got {type(body).__name__}")
    image = _opt(body, "image", "lang")
    if not image:
        raise InvalidAPIParameters(
            "image: missing; expected an image name such as backendai/python:3.11"
        )
    _typed(image, str, "image", "an image name")
    name = _opt(body, "sessionName", "name", "clientSessionToken")
    if name is None:
        name = f"sess-{secrets.token_hex(4)}"
    _typed(name, str, "sessionName", "a string")
    if not _NAME_RE.match(name):
        raise InvalidAPIParameters(
            f"sessionName: invalid value {name!r}; expected 4-64 characters of letters, digits, '.', '_', '-', "
            "starting with a letter or digit"
        )
    stype = _opt(body, "type", "sessionType", default="interactive")
    if stype not in ("interactive", "batch"):
        raise InvalidAPIParameters(
            f"type: invalid value {stype!r}; expected 'interactive' or 'batch'"
        )
    config = _typed(_opt(body, "config", default={}), dict, "config", "an object")
    resources = _typed(
        config.get("resources") or {}, dict, "config.resources", "an object of slot amounts"
    )
    environ = _typed(config.get("environ") or {}, dict, "config.environ", "an object of strings")
    for k, v in environ.items():
        if not isinstance(v, str):
            raise InvalidAPIParameters(
                f"config.environ.{k}: invalid value {v!r}; expected a string"
            )
    group = _opt(config, "scalingGroup", "scaling_group") or _opt(
        body, "scalingGroup", default="default"
    )
    _typed(group, str, "config.scalingGroup", "a resource group name")
    cluster_size = _typed(
        _opt(body, "clusterSize", "cluster_size", default=1), int, "clusterSize", "an integer >= 1"
    )
    if not 1 <= cluster_size <= 64:
        raise InvalidAPIParameters(f"clusterSize: invalid value {cluster_size!r}; expected 1 to 64")
    cluster_mode = _opt(body, "clusterMode", "cluster_mode", default="single-node")
    if cluster_mode not in ("single-node", "multi-node"):
        raise InvalidAPIParameters(
            f"clusterMode: invalid value {cluster_mode!r}; expected 'single-node' or 'multi-node'"
        )
    max_wait = _typed(
        _opt(body, "maxWaitSeconds", "max_wait_seconds", default=0),
        (int, float),
        "maxWaitSeconds",
        "seconds",
    )
    if max_wait < 0:
        raise InvalidAPIParameters(
            f"maxWaitSeconds: invalid value {max_wait!r}; expected seconds >= 0"
        )
    startup = _opt(body, "startupCommand", "startup_command")
    if startup is not None:
        _typed(startup, str, "startupCommand", "a shell command")
    if stype == "batch" and not startup:
        raise InvalidAPIParameters(
            "startupCommand: missing; a batch session needs the command it runs"
        )
    tag = _opt(body, "tag")
    if tag is not None:
        _typed(tag, str, "tag", "a string")
    arch = _opt(body, "architecture")
    if arch is not None:
        _typed(arch, str, "architecture", "an architecture such as x86_64")
    priority = _typed(_opt(body, "priority", default=0), int, "priority", "an integer")
    project = _opt(body, "group", "group_name")
    if project is not None:
        _typed(project, str, "group", "a project name or id")
    domain = _opt(body, "domain", "domain_name")
    if domain is not None:
        _typed(domain, str, "domain", "a domain name")
    return SessionRequest(
        image=image,
        name=name,
        session_type=stype,
        resource_group=group,
        cluster_mode=cluster_mode,
        cluster_size=cluster_size,
        resources=resources,
        environ=environ,
        tag=tag,
        startup_command=startup,
        enqueue_only=_flag(_opt(body, "enqueueOnly", "enqueue_only", default=False), "enqueueOnly"),
        max_wait=float(max_wait),
        reuse=_flag(_opt(body, "reuseIfExists", "reuse_if_exists", default=True), "reuseIfExists"),
        architecture=arch,
        priority=priority,
        project=project or None,
        domain=domain or None,
        scheduling=parse_scheduling_fields(body, stype, time.time()),
        mount_requests=parse_mounts(config),
    )


def _requested_slots(
    req: SessionRequest, labels: Mapping[str, str], known: set[str]
) -> ResourceSlots:
    raw = dict(req.resources)
    raw.setdefault("cpu", labels.get("ai.backend.resource.min.cpu", DEFAULT_CPU))
    raw.setdefault("mem", DEFAULT_MEM)
    slots = ResourceSlots.parse(raw, known=known)
    min_mem = parse_bytes(labels.get("ai.backend.resource.min.mem", "0"))
    if slots["mem"] < min_mem:
        raise InvalidAPIParameters(
            f"config.resources.mem: {format_bytes(slots['mem'])} is below the image's minimum {format_bytes(min_mem)}"
        )
    if slots["cpu"] <= 0:
        raise InvalidAPIParameters("config.resources.cpu: must be more than 0")
    return slots


def _check_fits_somewhere(conn: sa.Connection, group: str, arch: str, slots: ResourceSlots) -> None:
    caps = [
        ResourceSlots.from_json(c)
        for c in conn.execute(
            sa.select(agents.c.capacity).where(
                agents.c.resource_group == group,
                agents.c.architecture == arch,
                agents.c.status != "TERMINATED",
            )
        ).scalars()
    ]
    if caps and not any(slots.fits_in(c) for c in caps):
        largest = max(caps, key=lambda c: (c["cpu"], c["mem"]))
        raise InsufficientResources(
            f"no agent in resource group {group!r} can fit {slots.human()}; largest: {largest.human()}"
        )


def _enqueue(
    conn: sa.Connection, req: SessionRequest, access_key: str, now: float
) -> tuple[dict[str, Any], bool]:
    existing = (
        conn.execute(
            sa.select(sessions).where(
                sessions.c.access_key == access_key,
                sessions.c.name == req.name,
                sessions.c.terminated_at.is_(None),
            )
        )
        .mappings()
        .first()
    )
    if existing is not None:
        if req.reuse:
            return dict(existing), False
        raise Conflict(f"session name {req.name!r} is already in use by a live session")
    known_groups = list(conn.execute(sa.select(resource_groups.c.name)).scalars())
    if req.resource_group not in known_groups:
        raise InvalidAPIParameters(
            f"config.scalingGroup: unknown resource group {req.resource_group!r}; known: {', '.join(sorted(known_groups)) or 'none'}"
        )
    image, arch, labels = catalog.resolve_image(
        conn, req.image, req.architecture, req.resource_group
    )
    slots = _requested_slots(req, labels, known_slots(conn, req.resource_group))
    _check_fits_somewhere(conn, req.resource_group, arch, slots)
    domain_name, group_id = admit(
        conn, access_key, req.resource_group, slots, req.cluster_size, req.domain, req.project
    )
    depends_on = resolve_dependencies(conn, req.scheduling.dependencies, access_key)
    sid = str(uuid.uuid4())
    row = {
        "id": sid,
        "name": req.name,
        "access_key": access_key,
        "session_type": req.session_type,
        "status": "PENDING",
        "status_changed": now,
        "image": image,
        "architecture": arch,
        "resource_group": req.resource_group,
        "cluster_mode": req.cluster_mode,
        "cluster_size": req.cluster_size,
        "requested_slots": slots.to_json(),
        "environ": dict(req.environ),
        "mounts": [dict(m) for m in req.mounts],
        "tag": req.tag,
        "startup_command": req.startup_command,
        "priority": req.priority,
        "preemptible": req.scheduling.preemptible,
        "starts_at": req.scheduling.starts_at,
        "created_at": now,
        "domain_name": domain_name,
        "group_id": group_id,
    }
    kernel_rows = [
        {
            "id": str(uuid.uuid4()),
            "session_id": sid,
            "cluster_role": "main" if i == 0 else "sub",
            "cluster_idx": i,
            "status": "PENDING",
            "status_changed": now,
            "image": image,
            "requested_slots": slots.to_json(),
            "attempts": 0,
            "created_at": now,
        }
        for i in range(req.cluster_size)
    ]
    repo.insert_session(conn, row, kernel_rows)
    store_dependencies(conn, sid, depends_on)
    return row, True


async def create_session(
    ctx: ManagerContext, req: SessionRequest, access_key: str
) -> tuple[dict[str, Any], bool]:
    """Enqueue (or reuse) a session; unless enqueue-only, wait for RUNNING or the deadline."""
    try:
        row, created = await ctx.db.run(lambda c: _enqueue(c, req, access_key, time.time()))
    except DatabaseError as e:
        if "uq_sessions_live_name" in str(e) or "UNIQUE" in str(e):
            raise Conflict(
                f"session name {req.name!r} is already in use by a live session"
            ) from None
        raise
    if created:
        log.info("session %s (%s) enqueued: %s", req.name, row["id"], req.image)
        await publish_changes(
            ctx, [StatusChange(row["id"], row["name"], access_key, "", "PENDING", None)]
        )
        ctx.schedule.set()
    status = row["status"]
    if not req.enqueue_only and status not in TERMINAL and status != "RUNNING":
        limit = ctx.config.manager.max_wait_limit
        wait = min(req.max_wait, limit) if req.max_wait > 0 else limit
        status = "TIMEOUT"
        with trio.move_on_after(wait):
            status = await wait_for_session(ctx, row["id"])
    return {**row, "status": status}, created


async def wait_for_session(ctx: ManagerContext, session_id: str) -> str:
    """Wait until the session is RUNNING or terminal, and return that status."""

    def _status(c: sa.Connection) -> str:
        return str(
            c.execute(sa.select(sessions.c.status).where(sessions.c.id == session_id)).scalar_one()
        )

    while True:
        ev = ctx.waiters.setdefault(session_id, trio.Event())
        status = await ctx.db.run(_status)
        if status == "RUNNING" or status in TERMINAL:
            return status
        with trio.move_on_after(1.0):  # safety net for changes made by another manager
            await ev.wait()


async def resolve_session(ctx: ManagerContext, ref: str, access_key: str | None) -> dict[str, Any]:
    row = await ctx.db.run(lambda c: repo.find_session(c, ref, access_key))
    if row is None:
        raise SessionNotFound(f"no session {ref!r} found")
    return dict(row)


async def destroy_session(
    ctx: ManagerContext, session_id: str, *, forced: bool, reason: str | None = None
) -> str:
    """Cancel a PENDING session, or start terminating a live one; returns the new status.

    *reason* (default: ``force-terminated`` or ``user-requested``) is its status info.
    """
    reason = reason or ("force-terminated" if forced else "user-requested")

    def _destroy(c: sa.Connection) -> tuple[str, StatusChange | None]:
        now = time.time()
        where = kernels.c.session_id == session_id
        repo.set_kernels(c, where, ["PENDING"], "CANCELLED", reason=reason, now=now)
        repo.release_allocation(
            c,
            [
                r.id
                for r in c.execute(
                    sa.select(kernels.c.id).where(where, kernels.c.status == "CANCELLED")
                )
            ],
            now,
        )
        change = fail_session(c, session_id, reason, now)
        if forced:  # a forced request also overrides a termination already under way
            repo.set_kernels(
                c, where, ["TERMINATING"], "TERMINATING", reason=reason, now=now, lease_until=None
            )
        status = c.execute(
            sa.select(sessions.c.status).where(sessions.c.id == session_id)
        ).scalar_one()
        return str(status), change

    status, change = await ctx.db.run(_destroy)
    await publish_changes(ctx, [change])
    ctx.terminate.set()
    return status
