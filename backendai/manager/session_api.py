"""REST routes under ``/session`` (Backend.AI v7 dialect)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from typing import Any

import sqlalchemy as sa
from quart import Response, g, request
from quart_trio import QuartTrio

from ..db.tables import agents, allocations, kernels
from ..errors import InvalidAPIParameters, RPCError, ServerError
from ..sched import ResourceSlots
from . import repo
from .api import Caller, json_body, json_response
from .context import ManagerContext
from .mounts import resolve_mounts
from .session_ops import create_session, destroy_session, parse_create_request, resolve_session
from .states import TERMINAL

__all__ = ["add_session_routes", "iso", "owner_scope"]

_MAX_OFFSET = 2**31 - 1  # what every database takes as an OFFSET
_LIVE_CONTAINER = ("PREPARING", "PULLING", "PREPARED", "CREATING", "RUNNING", "TERMINATING")


def iso(t: float | None) -> str | None:
    return None if t is None else dt.datetime.fromtimestamp(t, dt.UTC).isoformat()


def owner_scope(caller: Caller) -> str | None:
    """Superadmins address any session unless they name an owner; others only their own."""
    if caller.is_superadmin and not caller.named_owner:
        return None
    return caller.owner_access_key


def _session_info(
    s: dict[str, Any], ks: list[sa.RowMapping], occupied: ResourceSlots, pending_reason: str | None
) -> dict[str, Any]:
    main = next((k for k in ks if k["cluster_role"] == "main"), ks[0] if ks else None)
    now = time.time()
    return {
        "sessionId": s["id"],
        "sessionName": s["name"],
        "ownerAccessKey": s["access_key"],
        "type": s["session_type"],
        "image": s["image"],
        "architecture": s["architecture"],
        "tag": s["tag"],
        "status": s["status"],
        "statusInfo": s["status_info"] or "",
        "statusChanged": iso(s["status_changed"]),
        "pendingReason": pending_reason,
        "priority": s["priority"],
        "preemptible": s["preemptible"],
        "startsAt": iso(s["starts_at"]),
        "domainName": s.get("domain_name"),
        "groupId": s.get("group_id"),
        "resourceGroup": s["resource_group"],
        "scalingGroup": s["resource_group"],
        "clusterMode": s["cluster_mode"],
        "clusterSize": s["cluster_size"],
        "requestedSlots": ResourceSlots.from_json(s["requested_slots"]).to_json(),
        "occupiedSlots": occupied.to_json(),
        "environ": s["environ"],
        "creationTime": iso(s["created_at"]),
        "terminationTime": iso(s["terminated_at"]),
        "age": round((s["terminated_at"] or now) - s["created_at"], 3),
        "exitCode": s["exit_code"],
        "containerId": main["container_id"] if main else None,
        "agent": main["agent_id"] if main else None,
        "numQueriesExecuted": 0,
        "lastStat": {},
        "kernels": [
            {
                "kernelId": k["id"],
                "clusterRole": k["cluster_role"],
                "clusterIdx": k["cluster_idx"],
                "agent": k["agent_id"],
                "containerId": k["container_id"],
                "status": k["status"],
                "statusInfo": k["status_info"] or "",
                "exitCode": k["exit_code"],
            }
            for k in ks
        ],
    }


def _details(c: sa.Connection, s: dict[str, Any]) -> dict[str, Any]:
    ks = repo.kernels_of(c, s["id"])
    occupied = ResourceSlots()
    for slots in c.execute(
        sa.select(allocations.c.slots).where(
            allocations.c.kernel_id.in_([k["id"] for k in ks]), allocations.c.released_at.is_(None)
        )
    ).scalars():
        occupied = occupied + ResourceSlots.from_json(slots)
    pending_reason = None
    if s["status"] == "PENDING":
        hist = repo.history(c, s["id"])
        # The scheduler's decision trace: the check that holds it back, and the details.
        pending_reason = next(
            (
                f"{h['reason']}: {h['detail']}" if h["reason"] else h["detail"]
                for h in reversed(hist)
                if h["status"] == "PENDING" and h["detail"] != "enqueued"
            ),
            None,
        )
    return _session_info(s, ks, occupied, pending_reason)


def add_session_routes(app: QuartTrio, ctx: ManagerContext) -> None:
    @app.route("/session", methods=["POST"])
    @app.route("/session/_/create", methods=["POST"])
    async def create() -> Response:
        caller: Caller = g.caller
        req = parse_create_request(await json_body())
        if req.mount_requests:
            mounts = await resolve_mounts(ctx, caller, req.mount_requests)
            req = dataclasses.replace(req, mounts=tuple(mounts))
        row, created = await create_session(ctx, req, caller.owner_access_key)
        body = {
            "sessionId": row["id"],
            "sessionName": row["name"],
            "status": row["status"],
            "servicePorts": [],
            "created": created,
        }
        return json_response(body, 201 if created else 200)

    @app.route("/session", methods=["GET"])
    async def list_() -> Response:
        caller: Caller = g.caller
        statuses = request.args.get("status")
        try:
            limit = int(request.args.get("limit", "100"))
            offset = int(request.args.get("offset", "0"))
        except ValueError:
            raise InvalidAPIParameters(
                f"limit/offset: invalid value {request.args.get('limit')!r}/{request.args.get('offset')!r}; expected integers"
            ) from None
        if not 1 <= limit <= 1000 or not 0 <= offset <= _MAX_OFFSET:
            raise InvalidAPIParameters(
                f"limit={limit} offset={offset}: expected 1 <= limit <= 1000 and "
                f"0 <= offset <= {_MAX_OFFSET}"
            )
        # all=true: every session for a superadmin, the domain's for a domain admin.
        every = request.args.get("all") in ("1", "true") and not caller.named_owner
        owner = (
            None if every and caller.role in ("superadmin", "admin") else caller.owner_access_key
        )
        domain = caller.domain if owner is None and caller.role == "admin" else None
        wanted = [s.strip().upper() for s in statuses.split(",")] if statuses else None

        def _list(c: sa.Connection) -> list[dict[str, Any]]:
            return [
                _details(c, dict(s))
                for s in repo.list_sessions(c, owner, wanted, limit, offset, domain=domain)
            ]

        return json_response({"sessions": await ctx.db.run(_list)})

    @app.route("/session/<ref>", methods=["GET"])
    async def info(ref: str) -> Response:
        s = await resolve_session(ctx, ref, owner_scope(g.caller))
        return json_response(await ctx.db.run(lambda c: _details(c, s)))

    @app.route("/session/<ref>", methods=["DELETE"])
    async def destroy(ref: str) -> Response:
        s = await resolve_session(ctx, ref, owner_scope(g.caller))
        forced = request.args.get("forced", "false").lower() in ("1", "true", "yes")
        status = (
            s["status"]
            if s["status"] in TERMINAL
            else await destroy_session(ctx, s["id"], forced=forced)
        )
        return json_response(
            {"sessionId": s["id"], "sessionName": s["name"], "status": status, "stats": {}}
        )

    @app.route("/session/<ref>/logs", methods=["GET"])
    async def logs(ref: str) -> Response:
        s = await resolve_session(ctx, ref, owner_scope(g.caller))

        def _where(c: sa.Connection) -> tuple[str, str, str] | None:
            row = c.execute(
                sa.select(kernels.c.id, kernels.c.status, agents.c.rpc_addr)
                .join(agents, agents.c.id == kernels.c.agent_id)
                .where(kernels.c.session_id == s["id"], kernels.c.cluster_role == "main")
            ).first()
            return None if row is None else (row[0], row[1], row[2])

        where = await ctx.db.run(_where)
        if where is None or where[1] not in _LIVE_CONTAINER:
            raise InvalidAPIParameters(
                f"session {s['name']!r} is {s['status']}: it has no container to read logs from"
            )
        try:
            text = await ctx.agents.kernel_logs(where[2], where[0])
        except RPCError as e:
            raise ServerError(f"could not read the logs of session {s['name']!r}: {e}") from e
        return json_response({"result": {"logs": text}})

    @app.route("/session/<ref>/status-history", methods=["GET"])
    async def status_history(ref: str) -> Response:
        s = await resolve_session(ctx, ref, owner_scope(g.caller))
        rows = await ctx.db.run(lambda c: repo.history(c, s["id"]))
        return json_response(
            {
                "result": [
                    {
                        "status": h["status"],
                        "kernelId": h["kernel_id"],
                        "reason": h["reason"],
                        "detail": h["detail"],
                        "at": iso(h["at"]),
                    }
                    for h in rows
                ]
            }
        )
