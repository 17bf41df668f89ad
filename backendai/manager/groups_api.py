"""Admin REST routes for resource groups and their scheduling policy (superadmin only).

    GET   /admin/resource-groups          every group: policy, options, agents, capacity, queue
    GET   /admin/resource-groups/{name}
    POST  /admin/resource-groups          {name, description?, isActive?, sequencer?,
                                          agentSelector?, options?}
    PATCH /admin/resource-groups/{name}   any of the same fields but name; options replace

``sequencer`` (also ``scheduler``) and ``agentSelector`` name plugins, built-in or
from entry points; ``options`` are checked by :class:`~backendai.sched.GroupOptions`.
A bad field is a 400 naming it and what is allowed; nothing changes then.  A
change wakes the scheduler: a new policy may start waiting sessions.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from typing import Any

import sqlalchemy as sa
from quart import Response, g, request
from quart_trio import QuartTrio

from ..db.tables import agents, allocations, resource_groups, sessions
from ..errors import Conflict, InvalidAPIParameters, NotFound, PermissionDenied
from ..sched import (
    GroupOptions,
    ResourceSlots,
    known_agent_selectors,
    known_sequencers,
    known_validators,
)
from .api import Caller, json_body, json_response
from .context import ManagerContext
from .sched_request import known_slots

__all__ = ["add_group_routes"]

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_FIELDS = {"name", "description", "isActive", "sequencer", "scheduler", "agentSelector", "options"}


def _superadmin() -> None:
    caller: Caller = g.caller
    if not caller.is_superadmin:
        raise PermissionDenied(
            f"{request.method} {request.path}: only a superadmin manages resource groups "
            f"(keypair {caller.access_key} is {caller.role})"
        )


def _text(body: dict[str, Any], key: str, limit: int) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise InvalidAPIParameters(
            f"{key}: invalid value {value!r}; expected a string of at most {limit} characters"
        )
    return value


def _values(conn: sa.Connection, body: Any, name: str) -> dict[str, Any]:
    """The columns to write for *body*, every field checked first."""
    if not isinstance(body, dict):
        raise InvalidAPIParameters(f"request body must be a JSON object, got {type(body).__name__}")
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise InvalidAPIParameters(
            f"{unknown[0]}: unknown field; known fields: {', '.join(sorted(_FIELDS))}"
        )
    values: dict[str, Any] = {}
    description = _text(body, "description", 512)
    if description is not None:
        values["description"] = description
    if "isActive" in body:
        if not isinstance(body["isActive"], bool):
            raise InvalidAPIParameters(
                f"isActive: invalid value {body['isActive']!r}; expected true or false"
            )
        values["is_active"] = body["isActive"]
    sequencer = _text(body, "sequencer", 64) or _text(body, "scheduler", 64)
    if sequencer is not None:
        if sequencer not in (known := known_sequencers()):
            raise InvalidAPIParameters(
                f"sequencer: unknown sequencer {sequencer!r}; known: {', '.join(known)}"
            )
        values["scheduler"] = sequencer
    selector = _text(body, "agentSelector", 64)
    if selector is not None:
        if selector not in (known := known_agent_selectors()):
            raise InvalidAPIParameters(
                f"agentSelector: unknown agent selector {selector!r}; known: {', '.join(known)}"
            )
        values["agent_selector"] = selector
    if "options" in body:
        raw = body["options"] if body["options"] is not None else {}
        if not isinstance(raw, dict):
            raise InvalidAPIParameters(f"options: invalid value {raw!r}; expected an object")
        options = GroupOptions.parse(raw, group=name, known_slots=known_slots(conn, name))
        for v in options.validators or ():
            if v not in (known := known_validators()):
                raise InvalidAPIParameters(
                    f"options.validators: unknown validator {v!r}; known: {', '.join(known)}"
                )
        values["options"] = raw
    return values


def _describe(conn: sa.Connection, names: list[str] | None) -> list[dict[str, Any]]:
    q = sa.select(resource_groups).order_by(resource_groups.c.name)
    if names is not None:
        q = q.where(resource_groups.c.name.in_(names))
    rows = list(conn.execute(q).mappings())
    capacity: dict[str, ResourceSlots] = defaultdict(ResourceSlots)
    count: dict[str, int] = defaultdict(int)
    for group, cap in conn.execute(
        sa.select(agents.c.resource_group, agents.c.capacity).where(agents.c.status == "ALIVE")
    ):
        capacity[group] = capacity[group] + ResourceSlots.from_json(cap)
        count[group] += 1
    occupied: dict[str, ResourceSlots] = defaultdict(ResourceSlots)
    for group, slots in conn.execute(
        sa.select(agents.c.resource_group, allocations.c.slots)
        .join(agents, agents.c.id == allocations.c.agent_id)
        .where(allocations.c.released_at.is_(None))
    ):
        occupied[group] = occupied[group] + ResourceSlots.from_json(slots)
    pending: dict[str, int] = dict(
        conn.execute(
            sa.select(sessions.c.resource_group, sa.func.count())
            .where(sessions.c.status == "PENDING")
            .group_by(sessions.c.resource_group)
        ).all()
    )
    return [
        {
            "name": r["name"],
            "description": r["description"],
            "isActive": bool(r["is_active"]),
            "sequencer": r["scheduler"],
            "agentSelector": r["agent_selector"],
            "options": r["options"] or {},
            "agents": count[r["name"]],
            "capacity": capacity[r["name"]].to_json(),
            "occupied": occupied[r["name"]].to_json(),
            "pending": pending.get(r["name"], 0),
        }
        for r in rows
    ]


def _one(conn: sa.Connection, name: str) -> dict[str, Any]:
    found = _describe(conn, [name])
    if not found:
        known = ", ".join(conn.execute(sa.select(resource_groups.c.name)).scalars()) or "none"
        raise NotFound(f"no resource group {name!r}; known: {known}")
    return found[0]


def add_group_routes(app: QuartTrio, ctx: ManagerContext) -> None:
    @app.route("/admin/resource-groups", methods=["GET"])
    async def list_groups() -> Response:
        _superadmin()
        groups = await ctx.db.run(lambda c: _describe(c, None))
        return json_response({"resourceGroups": groups})

    @app.route("/admin/resource-groups/<name>", methods=["GET"])
    async def get_group(name: str) -> Response:
        _superadmin()
        return json_response({"resourceGroup": await ctx.db.run(lambda c: _one(c, name))})

    @app.route("/admin/resource-groups", methods=["POST"])
    async def create_group() -> Response:
        _superadmin()
        body = await json_body()
        name = body.get("name") if isinstance(body, dict) else None
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise InvalidAPIParameters(
                f"name: invalid value {name!r}; expected 1-64 letters, digits, '.', '_', '-', "
                "starting with a letter or digit"
            )

        def _create(c: sa.Connection) -> dict[str, Any]:
            values = _values(c, body, name)
            exists = c.execute(
                sa.select(resource_groups.c.name).where(resource_groups.c.name == name)
            ).first()
            if exists is not None:
                raise Conflict(f"resource group {name!r} already exists; update it instead")
            c.execute(
                resource_groups.insert().values(
                    **{
                        "name": name,
                        "description": "",
                        "is_active": True,
                        "scheduler": "fifo",
                        "agent_selector": "first-fit",
                        "options": {},
                        "created_at": time.time(),
                        **values,
                    }
                )
            )
            return _one(c, name)

        created = await ctx.db.run(_create)
        ctx.schedule.set()
        return json_response({"resourceGroup": created}, 201)

    @app.route("/admin/resource-groups/<name>", methods=["PATCH"])
    async def update_group(name: str) -> Response:
        _superadmin()
        body = await json_body()
        if isinstance(body, dict) and "name" in body and body["name"] != name:
            raise InvalidAPIParameters(
                f"name: a resource group cannot be renamed ({name!r} to {body['name']!r})"
            )

        def _update(c: sa.Connection) -> dict[str, Any]:
            _one(c, name)
            values = _values(c, body, name)
            if values:
                c.execute(
                    resource_groups.update().where(resource_groups.c.name == name).values(**values)
                )
            return _one(c, name)

        updated = await ctx.db.run(_update)
        ctx.schedule.set()
        return json_response({"resourceGroup": updated})
