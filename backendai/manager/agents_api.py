"""Admin REST routes for agents: ``GET /resource/agents[/{id}]`` (superadmin only).

Each agent with its status, resource group, capacity, what its live
allocations occupy (summed from the ``allocations`` rows, never a counter),
and the hardware topology its heartbeats carry (NUMA nodes, CPUs, GPUs, NICs,
NVMe devices with their PCIe paths, and where its kernels are pinned).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from quart import Response, g, request
from quart_trio import QuartTrio

from ..db.tables import agents, allocations, kernels
from ..errors import InvalidAPIParameters, NotFound, PermissionDenied
from ..sched import ResourceSlots
from .api import Caller, json_response
from .context import ManagerContext
from .session_api import iso
from .states import TERMINAL

__all__ = ["add_agent_routes", "agent_json", "load_agents"]

STATUSES = ("ALIVE", "LOST", "TERMINATED")


def _superadmin() -> None:
    caller: Caller = g.caller
    if not caller.is_superadmin:
        raise PermissionDenied(
            f"{request.method} {request.path}: only a superadmin may inspect agents "
            f"(access key {caller.access_key!r} has role {caller.role!r})"
        )


def agent_json(row: sa.RowMapping, occupied: ResourceSlots) -> dict[str, Any]:
    capacity = ResourceSlots.from_json(row["capacity"])
    return {
        "id": row["id"],
        "status": row["status"],
        "status_changed": iso(row["status_changed"]),
        "resource_group": row["resource_group"],
        "rpc_addr": row["rpc_addr"],
        "architecture": row["architecture"],
        "backend": row["backend"],
        "version": row["version"],
        "capacity": capacity.to_json(),
        "occupied": occupied.to_json(),
        "free": (capacity - occupied).to_json(),
        "first_contact": iso(row["first_contact"]),
        "last_heartbeat": iso(row["last_heartbeat"]),
        "topology": row["hardware"] or {},
    }


def load_agents(
    conn: sa.Connection, *, agent_id: str | None = None, statuses: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """Agents (one, or those in *statuses*, or all) with their live occupancy."""
    query = sa.select(agents).order_by(agents.c.id)
    if agent_id is not None:
        query = query.where(agents.c.id == agent_id)
    if statuses:
        query = query.where(agents.c.status.in_(statuses))
    rows = list(conn.execute(query).mappings())
    live = sa.select(allocations.c.agent_id, allocations.c.slots).where(
        allocations.c.released_at.is_(None),
        allocations.c.agent_id.in_([r["id"] for r in rows]),
    )
    occupied: dict[str, ResourceSlots] = {}
    for owner, slots in conn.execute(live):
        occupied[owner] = occupied.get(owner, ResourceSlots()) + ResourceSlots.from_json(slots)
    return [agent_json(r, occupied.get(r["id"], ResourceSlots())) for r in rows]


def _kernels_on(conn: sa.Connection, agent_id: str) -> list[dict[str, Any]]:
    query = (
        sa.select(
            kernels.c.id,
            kernels.c.session_id,
            kernels.c.status,
            kernels.c.container_id,
            allocations.c.slots,
        )
        .join(
            allocations,
            sa.and_(allocations.c.kernel_id == kernels.c.id, allocations.c.released_at.is_(None)),
            isouter=True,
        )
        .where(kernels.c.agent_id == agent_id, kernels.c.status.not_in(TERMINAL))
        .order_by(kernels.c.created_at)
    )
    return [
        {
            "kernel_id": r.id,
            "session_id": r.session_id,
            "status": r.status,
            "container_id": r.container_id,
            "slots": ResourceSlots.from_json(r.slots or {}).to_json(),
        }
        for r in conn.execute(query)
    ]


def add_agent_routes(app: QuartTrio, ctx: ManagerContext) -> None:
    @app.route("/resource/agents", methods=["GET"])
    async def list_agents() -> Response:
        _superadmin()
        wanted = [s.strip().upper() for s in request.args.get("status", "").split(",") if s.strip()]
        bad = [s for s in wanted if s not in STATUSES]
        if bad:
            raise InvalidAPIParameters(
                f"status: unknown agent status {', '.join(bad)}; expected {', '.join(STATUSES)}"
            )
        found = await ctx.db.run(lambda c: load_agents(c, statuses=wanted))
        return json_response({"agents": found})

    @app.route("/resource/agents/<agent_id>", methods=["GET"])
    async def agent_info(agent_id: str) -> Response:
        _superadmin()

        def load(c: sa.Connection) -> dict[str, Any] | None:
            found = load_agents(c, agent_id=agent_id)
            return {**found[0], "kernels": _kernels_on(c, agent_id)} if found else None

        info = await ctx.db.run(load)
        if info is None:
            raise NotFound(f"no agent {agent_id!r}; `backendai admin agent list` shows them")
        return json_response(info)
