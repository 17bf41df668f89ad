"""Sharing virtual folders: invitations a user accepts, direct shares, and quotas.

    POST   /folders/{name}/invite          {perm, emails}     owner invites users
    GET    /folders/invitations/list                          invitations to me
    POST   /folders/invitations/accept     {inv_id}
    DELETE /folders/invitations/delete     {inv_id}           decline (invitee) or cancel
    POST   /folders/{name}/share           {permission, emails}   grant at once (owner, admin)
    DELETE /folders/{name}/unshare         {emails}
    GET    /folders/_/quota?folder_host=&id=                  quota and usage
    POST   /folders/_/quota                {folder_host, id, input: {size_bytes}}

Users are named by their user id (an email for the bootstrap admin).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa
from quart import Response, request
from quart_trio import QuartTrio

from ..db.tables import vfolder_invitations, vfolders
from ..errors import InvalidAPIParameters, NotFound, PermissionDenied
from . import folders_repo as repo
from .api import Caller, json_body, json_response
from .context import ManagerContext

__all__ = ["add_share_routes"]

Resolve = Callable[[str], Awaitable[tuple[Caller, str, repo.Access]]]
Me = Callable[[], Awaitable[tuple[Caller, str]]]


def _users(body: dict[str, Any]) -> list[str]:
    emails = body.get("emails", body.get("user_ids"))
    if not isinstance(emails, list) or not emails or not all(isinstance(e, str) for e in emails):
        raise InvalidAPIParameters(f"emails: {emails!r} is invalid; expected a list of user ids")
    return emails


def _check_users(c: sa.Connection, users: list[str]) -> None:
    unknown = [u for u in users if not repo.user_exists(c, u)]
    if unknown:
        raise NotFound(f"no such users: {', '.join(unknown)}")


def add_share_routes(app: QuartTrio, ctx: ManagerContext, resolve: Resolve, me: Me) -> None:
    @app.route("/folders/<ref>/invite", methods=["POST"])
    async def vf_invite(ref: str) -> Response:
        caller, user, a = await resolve(ref)
        repo.require_owner(a, caller.role, "invite users")
        body = await json_body()
        perm = repo.check_permission(body.get("perm", "rw"), "perm")
        users = _users(body)

        def _invite(c: sa.Connection) -> list[str]:
            _check_users(c, users)
            ids = []
            for invitee in users:
                if invitee == user:
                    raise InvalidAPIParameters(f"{invitee} owns {a.folder.name!r} already")
                inv_id = str(uuid.uuid4())
                c.execute(
                    vfolder_invitations.insert().values(
                        id=inv_id,
                        vfolder_id=a.folder.id,
                        inviter=user,
                        invitee=invitee,
                        permission=perm,
                        state="pending",
                        created_at=time.time(),
                    )
                )
                ids.append(inv_id)
            return ids

        return json_response({"invited_ids": await ctx.db.run(_invite)}, 201)

    @app.route("/folders/invitations/list")
    async def vf_invitations() -> Response:
        _, user = await me()

        def _list(c: sa.Connection) -> list[dict[str, Any]]:
            q = (
                sa.select(vfolder_invitations, vfolders.c.name)
                .join(vfolders, vfolders.c.id == vfolder_invitations.c.vfolder_id)
                .where(
                    vfolder_invitations.c.invitee == user,
                    vfolder_invitations.c.state == "pending",
                )
            )
            return [
                {
                    "id": r.id,
                    "inviter": r.inviter,
                    "invitee": r.invitee,
                    "perm": r.permission,
                    "state": r.state,
                    "vfolder_id": r.vfolder_id,
                    "vfolder_name": r.name,
                    "created_at": r.created_at,
                }
                for r in c.execute(q)
            ]

        return json_response({"invitations": await ctx.db.run(_list)})

    async def _settle(inv_id: Any, accept: bool) -> None:
        _, user = await me()

        def _do(c: sa.Connection) -> None:
            row = c.execute(
                sa.select(vfolder_invitations).where(
                    vfolder_invitations.c.id == inv_id,
                    vfolder_invitations.c.state == "pending",
                )
            ).first()
            if row is None or user not in (row.invitee, row.inviter):
                raise NotFound(f"no pending invitation {inv_id!r} for {user}")
            if accept and user != row.invitee:
                raise PermissionDenied(f"invitation {inv_id!r} is for {row.invitee}, not {user}")
            state = "accepted" if accept else "rejected" if user == row.invitee else "canceled"
            c.execute(
                vfolder_invitations.update()
                .where(vfolder_invitations.c.id == inv_id)
                .values(state=state)
            )
            if accept:
                repo.grant(c, row.vfolder_id, user, row.permission)

        await ctx.db.run(_do)

    @app.route("/folders/invitations/accept", methods=["POST"])
    async def vf_accept() -> Response:
        await _settle((await json_body()).get("inv_id"), True)
        return json_response({"msg": "accepted"})

    @app.route("/folders/invitations/delete", methods=["DELETE"])
    async def vf_decline() -> Response:
        await _settle((await json_body()).get("inv_id"), False)
        return json_response({"msg": "deleted"})

    @app.route("/folders/<ref>/share", methods=["POST"])
    async def vf_share(ref: str) -> Response:
        caller, _, a = await resolve(ref)
        repo.require_owner(a, caller.role, "share it")
        body = await json_body()
        perm = repo.check_permission(body.get("permission", "rw"))
        users = _users(body)

        def _share(c: sa.Connection) -> None:
            _check_users(c, users)
            for u in users:
                if u != a.folder.user_id:
                    repo.grant(c, a.folder.id, u, perm)

        await ctx.db.run(_share)
        return json_response({"shared_emails": users}, 201)

    @app.route("/folders/<ref>/unshare", methods=["DELETE"])
    async def vf_unshare(ref: str) -> Response:
        caller, _, a = await resolve(ref)
        repo.require_owner(a, caller.role, "unshare it")
        users = _users(await json_body())
        await ctx.db.run(lambda c: repo.revoke(c, a.folder.id, users))
        return json_response({"unshared_emails": users})

    async def _quota_target(folder_id: Any) -> repo.Access:
        if not isinstance(folder_id, str) or not folder_id:
            raise InvalidAPIParameters(f"id: {folder_id!r} is invalid; expected a folder id")
        _, _, a = await resolve(folder_id)
        return a

    @app.route("/folders/_/quota", methods=["GET"])
    async def vf_get_quota() -> Response:
        a = await _quota_target(request.args.get("id") or (await json_body()).get("id"))
        repo.require(a, "ro", "reading the quota")
        usage = await ctx.storage.call("GET", f"/v1/folders/{a.folder.host}/{a.folder.id}")
        return json_response(
            {"quota_bytes": usage["quota_bytes"], "used_bytes": usage["used_bytes"]}
        )

    @app.route("/folders/_/quota", methods=["POST"])
    async def vf_set_quota() -> Response:
        body = await json_body()
        caller, _ = await me()
        a = await _quota_target(body.get("id"))
        if caller.role not in ("superadmin", "admin"):
            raise PermissionDenied("only administrators set folder quotas")
        size = (body.get("input") or {}).get("size_bytes")
        quota = None if size in (None, 0) else size
        await ctx.storage.call(
            "PUT", f"/v1/folders/{a.folder.host}/{a.folder.id}/quota", json={"quota_bytes": quota}
        )
        await ctx.db.run(
            lambda c: c.execute(
                vfolders.update().where(vfolders.c.id == a.folder.id).values(quota_bytes=quota)
            )
        )
        return json_response({"size_bytes": size or 0})
