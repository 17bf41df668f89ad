"""REST routes for virtual folders (``/folders``): the manager decides, the storage proxy acts.

The manager never carries file bytes: ``request-upload`` and
``request-download`` hand the client a short-lived token for the storage
proxy.  Needed permissions: ``ro`` to read (files, download), ``rw`` to write
(upload, mkdir, rename, move, delete files), ``wd`` to delete the folder; the
owner (or a superadmin) renames, shares and invites.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa
from quart import Response, g, request
from quart_trio import QuartTrio

from ..errors import Conflict, DatabaseError, InvalidAPIParameters, NotFound, PermissionDenied
from ..sched.slots import parse_bytes
from ..vfs.tokens import TransferClaims, issue_token
from . import folders_repo as repo
from .api import Caller, json_body, json_response
from .context import ManagerContext
from .folders_share import add_share_routes

__all__ = ["add_folder_routes", "folder_json"]

_USAGE_MODES = ("general", "model", "data")
T = TypeVar("T")


def folder_json(a: repo.Access) -> dict[str, Any]:
    f = a.folder
    return {
        "id": f.id,
        "name": f.name,
        "host": f.host,
        "usage_mode": f.usage_mode,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(f.created_at)),
        "is_owner": a.is_owner,
        "permission": a.permission,
        "user": f.user_id,
        "group": f.project,
        "type": f.ownership_type,
        "ownership_type": f.ownership_type,
        "cloneable": f.cloneable,
        "status": f.status,
        "max_size": f.quota_bytes or 0,
    }


def _quota(value: Any) -> int | None:
    if value in (None, "", 0, "0"):
        return None
    return int(parse_bytes(value, where="quota"))


def _text(body: dict[str, Any], key: str, default: str | None = None) -> str:
    value = body.get(key, default)
    if not isinstance(value, str):
        raise InvalidAPIParameters(f"{key}: {value!r} is invalid; expected a string")
    return value


def add_folder_routes(app: QuartTrio, ctx: ManagerContext) -> None:
    storage = ctx.storage

    async def me() -> tuple[Caller, str]:
        caller: Caller = g.caller
        return caller, await ctx.db.run(lambda c: repo.caller_user_id(c, caller))

    async def resolve(ref: str) -> tuple[Caller, str, repo.Access]:
        caller, user = await me()
        access = await ctx.db.run(lambda c: repo.resolve_folder(c, user, caller.role, ref))
        return caller, user, access

    async def default_host() -> str:
        vols = [v["name"] for v in await storage.volumes()]
        return "local" if "local" in vols else vols[0]

    async def unique_write(name: str, fn: Callable[[sa.Connection], T]) -> T:
        """Run *fn*; a name taken by a concurrent request (the unique index) is a 409."""
        try:
            return await ctx.db.run(fn)
        except DatabaseError as e:
            if "uq_vfolders" in str(e) or "unique" in str(e).lower():
                raise Conflict(f"a virtual folder named {name!r} already exists") from None
            raise

    def base(a: repo.Access) -> str:
        return f"/v1/folders/{a.folder.host}/{a.folder.id}"

    @app.route("/folders", methods=["POST"])
    async def vf_create() -> Response:
        caller, user = await me()
        body = await json_body()
        name = repo.check_name(body.get("name"))
        host = body.get("host") or await default_host()
        usage_mode = body.get("usage_mode") or "general"
        if usage_mode not in _USAGE_MODES:
            raise InvalidAPIParameters(
                f"usage_mode: {usage_mode!r} is invalid; expected one of {', '.join(_USAGE_MODES)}"
            )
        permission = repo.check_permission(body.get("permission") or "rw")
        project = body.get("group") or None
        if project is not None and not await ctx.db.run(
            lambda c: repo.administers_project(c, str(project), user, caller.role)
        ):
            raise PermissionDenied(
                f"group {project!r}: no such project in your domain, or you do not administer "
                "it (project folders are created by a superadmin or the domain's admins)"
            )
        quota = _quota(body.get("quota"))
        folder = await unique_write(
            name,
            lambda c: repo.insert_folder(
                c,
                name=name,
                host=str(host),
                user_id=user,
                project=project,
                usage_mode=usage_mode,
                permission=permission,
                cloneable=bool(body.get("cloneable", False)),
                quota_bytes=quota,
            ),
        )
        try:
            await storage.call(
                "POST",
                f"/v1/folders/{host}",
                json={"id": folder.id, "quota_bytes": folder.quota_bytes},
            )
        except BaseException:
            await ctx.db.run(lambda c: repo.delete_folder_rows(c, folder.id))
            raise
        return json_response(folder_json(repo.Access(folder, "wd", True)), 201)

    @app.route("/folders", methods=["GET"])
    async def vf_list_folders() -> Response:
        caller, user = await me()
        everything = request.args.get("all") in ("1", "true") or bool(
            (await json_body()).get("all")
        )
        found = await ctx.db.run(
            lambda c: repo.list_access(c, user, caller.role, everything=everything)
        )
        return json_response([folder_json(a) for a in found])

    @app.route("/folders", methods=["DELETE"])
    async def vf_delete_by_id() -> Response:
        return await _delete(_text(await json_body(), "id", ""))

    @app.route("/folders/_/hosts")
    async def vf_hosts() -> Response:
        vols = await storage.volumes()
        names = [v["name"] for v in vols]
        return json_response(
            {
                "default": "local" if "local" in names else names[0],
                "allowed": names,
                "volume_info": {
                    v["name"]: {"backend": v["backend"], "capabilities": ["quota"]} for v in vols
                },
            }
        )

    @app.route("/folders/<ref>", methods=["GET"])
    async def vf_info(ref: str) -> Response:
        _, _, a = await resolve(ref)
        details = await storage.call("GET", base(a))
        out = folder_json(a)
        out.update(
            numFiles=details["file_count"],
            used_bytes=details["used_bytes"],
            quota=details["quota_bytes"],
        )
        return json_response(out)

    async def _delete(ref: str) -> Response:
        _, _, a = await resolve(ref)
        repo.require(a, "wd", "deleting the folder")
        # The files first: should that fail, the row stays and the delete can be retried.
        with contextlib.suppress(NotFound):  # already gone from the volume
            await storage.call("DELETE", base(a))
        await ctx.db.run(lambda c: repo.delete_folder_rows(c, a.folder.id))
        return Response(b"", status=204)

    @app.route("/folders/<ref>", methods=["DELETE"])
    async def vf_delete(ref: str) -> Response:
        return await _delete(ref)

    @app.route("/folders/<ref>/rename", methods=["POST"])
    async def vf_rename(ref: str) -> Response:
        caller, _, a = await resolve(ref)
        repo.require_owner(a, caller.role, "rename it")
        new = repo.check_name((await json_body()).get("new_name"))
        await unique_write(new, lambda c: repo.rename_folder(c, a.folder, new))
        return Response(b"", status=201)

    @app.route("/folders/<ref>/files", methods=["GET"])
    async def vf_files(ref: str) -> Response:
        _, _, a = await resolve(ref)
        repo.require(a, "ro", "listing files")
        body = await json_body()
        params = {"path": request.args.get("path") or body.get("path") or ""}
        for key in ("offset", "limit"):
            if key in request.args:
                params[key] = request.args[key]
        items = (await storage.call("GET", f"{base(a)}/files", params=params))["items"]
        legacy = [
            {
                "filename": i["name"],
                "size": i["size"],
                "mtime": i["modified"],
                "ctime": i["created"],
                "mode": i["mode"],
                "type": i["type"],
            }
            for i in items
        ]
        return json_response({"items": items, "files": json.dumps(legacy)})

    @app.route("/folders/<ref>/mkdir", methods=["POST"])
    async def vf_mkdir(ref: str) -> Response:
        _, _, a = await resolve(ref)
        repo.require(a, "rw", "mkdir")
        body = await json_body()
        paths = body.get("path", "")
        for path in paths if isinstance(paths, list) else [paths]:
            await storage.call(
                "POST",
                f"{base(a)}/mkdir",
                json={
                    "path": path,
                    "parents": bool(body.get("parents", False)),
                    "exist_ok": bool(body.get("exist_ok", False)),
                },
            )
        return Response(b"", status=201)

    async def _token(a: repo.Access, claims: TransferClaims) -> Response:
        token = issue_token(ctx.config.cluster.secret, claims)
        url = f"{await storage.public_url()}/{claims.op}"
        return json_response({"token": token, "url": url})

    @app.route("/folders/<ref>/request-upload", methods=["POST"])
    async def vf_request_upload(ref: str) -> Response:
        _, _, a = await resolve(ref)
        repo.require(a, "rw", "uploading")
        body = await json_body()
        size = body.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidAPIParameters(f"size: {size!r} is invalid; expected bytes >= 0")
        exp = time.time() + ctx.config.manager.transfer_token_ttl
        path = _text(body, "path")
        return await _token(
            a, TransferClaims("upload", a.folder.host, a.folder.id, path, exp, size)
        )

    @app.route("/folders/<ref>/request-download", methods=["POST"])
    async def vf_request_download(ref: str) -> Response:
        _, _, a = await resolve(ref)
        repo.require(a, "ro", "downloading")
        body = await json_body()
        exp = time.time() + ctx.config.manager.transfer_token_ttl
        claims = TransferClaims(
            "download",
            a.folder.host,
            a.folder.id,
            _text(body, "path"),
            exp,
            archive=bool(body.get("archive", False)),
        )
        return await _token(a, claims)

    # Writes inside a folder: the client's fields -> the proxy's, under permission rw.
    writes: dict[str, tuple[str, Callable[[dict[str, Any]], dict[str, Any]]]] = {
        "rename-file": (
            "renaming files",
            lambda b: {"path": _text(b, "target_path"), "new_name": _text(b, "new_name")},
        ),
        "move-file": ("moving files", lambda b: {"src": _text(b, "src"), "dst": _text(b, "dst")}),
        "delete-files": (
            "deleting files",
            lambda b: {"paths": b.get("files"), "recursive": bool(b.get("recursive", False))},
        ),
    }

    # One explicit path per operation, so each is in the OpenAPI document.
    @app.route("/folders/<ref>/rename-file", methods=["POST"], defaults={"op": "rename-file"})
    @app.route("/folders/<ref>/move-file", methods=["POST"], defaults={"op": "move-file"})
    @app.route("/folders/<ref>/delete-files", methods=["POST"], defaults={"op": "delete-files"})
    @app.route("/folders/<ref>/delete-files", methods=["DELETE"], defaults={"op": "delete-files"})
    async def vf_write(ref: str, op: str) -> Response:
        what, fields = writes[op]
        _, _, a = await resolve(ref)
        repo.require(a, "rw", what)
        await storage.call("POST", f"{base(a)}/{op}", json=fields(await json_body()))
        return json_response({})  # the official client reads a JSON body

    @app.route("/folders/<ref>/clone", methods=["POST"])
    async def vf_clone(ref: str) -> Response:
        caller, user, a = await resolve(ref)
        repo.require(a, "ro", "cloning")
        if not a.folder.cloneable and not a.is_owner and caller.role != "superadmin":
            raise PermissionDenied(f"folder {a.folder.name!r} is not cloneable")
        body = await json_body()
        target_host = body.get("target_host") or a.folder.host
        if target_host != a.folder.host:
            raise InvalidAPIParameters(
                f"target_host {target_host!r}: cloning works within one volume ({a.folder.host!r})"
            )
        name = repo.check_name(body.get("target_name"))
        folder = await unique_write(
            name,
            lambda c: repo.insert_folder(
                c,
                name=name,
                host=a.folder.host,
                user_id=user,
                project=None,
                usage_mode=body.get("usage_mode") or a.folder.usage_mode,
                permission=repo.check_permission(body.get("permission") or "rw"),
                cloneable=bool(body.get("cloneable", False)),
                quota_bytes=a.folder.quota_bytes,
            ),
        )
        try:
            await storage.call("POST", f"{base(a)}/clone", json={"target_id": folder.id})
        except BaseException:
            await ctx.db.run(lambda c: repo.delete_folder_rows(c, folder.id))
            raise
        return json_response(folder_json(repo.Access(folder, "wd", True)), 201)

    add_share_routes(app, ctx, resolve, me)
