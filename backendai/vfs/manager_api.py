"""The storage proxy's manager-facing API, authenticated with the cluster secret.

The manager owns who may do what; this API does what it is told, on one
volume's folders, by folder id::

    GET    /v1/health                              (no secret)
    GET    /v1/volumes
    POST   /v1/folders/{vol}                       {id, quota_bytes}
    GET    /v1/folders/{vol}/{id}                  mount path, quota, usage
    DELETE /v1/folders/{vol}/{id}
    POST   /v1/folders/{vol}/{id}/clone            {target_id}
    PUT    /v1/folders/{vol}/{id}/quota            {quota_bytes}
    GET    /v1/folders/{vol}/{id}/usage
    GET    /v1/folders/{vol}/{id}/files?path=&offset=&limit=   streamed JSON
    POST   /v1/folders/{vol}/{id}/mkdir            {path, parents, exist_ok}
    POST   /v1/folders/{vol}/{id}/rename-file      {path, new_name}
    POST   /v1/folders/{vol}/{id}/move-file        {src, dst}
    POST   /v1/folders/{vol}/{id}/delete-files     {paths, recursive}
"""

from __future__ import annotations

import hmac
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict
from typing import Any

import trio
from quart import Response, request
from quart_trio import QuartTrio

from ..config import Secret
from ..errors import APIError, InvalidAPIParameters
from . import fileops
from .backend import VolumeBackend, check_folder_id
from .volumes import Volumes

__all__ = ["create_manager_app"]

_PROBLEM_BASE = "https://api.backend.ai/probs/"


def _problem(status: int, slug: str, title: str, msg: str) -> Response:
    body = {"type": _PROBLEM_BASE + slug, "title": title, "msg": msg}
    return Response(json.dumps(body), status=status, content_type="application/problem+json")


def _json(obj: Any, status: int = 200) -> Response:
    return Response(json.dumps(obj), status=status, content_type="application/json")


async def _body() -> dict[str, Any]:
    raw = await request.get_data()
    try:
        data = json.loads(raw) if raw else {}
    except ValueError as e:
        raise InvalidAPIParameters(f"request body is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise InvalidAPIParameters(f"request body is {type(data).__name__}; expected an object")
    return data


def _query_int(name: str, default: int, maximum: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) > maximum:
        raise InvalidAPIParameters(f"query {name}={raw!r}; expected an integer 0..{maximum}")
    return int(raw)


def create_manager_app(
    volumes: Volumes, secret: Secret, limiter: trio.CapacityLimiter
) -> QuartTrio:
    app = QuartTrio("backendai.storage")
    app.config["RESPONSE_TIMEOUT"] = None  # listings of huge directories stream for long
    expected = f"Bearer {secret.reveal()}".encode()

    async def run(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await trio.to_thread.run_sync(lambda: fn(*args, **kwargs), limiter=limiter)

    def folder(vol: str, fid: str) -> tuple[VolumeBackend, str]:
        return volumes.get(vol), check_folder_id(fid)

    @app.before_request
    async def check_secret() -> Response | None:
        if request.path == "/v1/health":
            return None
        if not hmac.compare_digest(request.headers.get("Authorization", "").encode(), expected):
            return _problem(401, "auth-failed", "auth-failed", "missing or wrong cluster secret")
        return None

    @app.errorhandler(APIError)
    async def api_error(e: APIError) -> Response:
        return _problem(e.status, e.slug, e.title, str(e))

    @app.route("/v1/health")
    async def health() -> Response:
        return _json({"status": "ok"})

    @app.route("/v1/volumes")
    async def list_volumes() -> Response:
        infos = await run(volumes.info)
        return _json(
            {
                "volumes": [asdict(v) for v in infos],
                "public_url": app.config.get("BACKENDAI_PUBLIC_URL", ""),
            }
        )

    @app.route("/v1/folders/<vol>", methods=["POST"])
    async def create(vol: str) -> Response:
        body = await _body()
        b, fid = folder(vol, body.get("id", ""))
        await run(b.create_folder, fid, body.get("quota_bytes"))
        await run(fileops.give, b.mount_path(fid), volumes.owner)
        return _json({"id": fid, "mount_path": str(b.mount_path(fid))}, 201)

    @app.route("/v1/folders/<vol>/<fid>", methods=["GET"])
    async def info(vol: str, fid: str) -> Response:
        b, fid = folder(vol, fid)
        quota = await run(b.get_quota, fid)
        usage = await run(b.usage, fid)
        return _json(
            {
                "id": fid,
                "volume": vol,
                "backend": b.kind,
                "mount_path": str(b.mount_path(fid)),
                "quota_bytes": quota,
                **asdict(usage),
            }
        )

    @app.route("/v1/folders/<vol>/<fid>", methods=["DELETE"])
    async def delete(vol: str, fid: str) -> Response:
        b, fid = folder(vol, fid)
        await run(b.delete_folder, fid)
        return Response(b"", status=204)

    @app.route("/v1/folders/<vol>/<fid>/clone", methods=["POST"])
    async def clone(vol: str, fid: str) -> Response:
        b, fid = folder(vol, fid)
        target = check_folder_id((await _body()).get("target_id", ""))
        await run(b.clone_folder, fid, target)
        await run(fileops.give, b.mount_path(target), volumes.owner)
        return _json({"id": target, "mount_path": str(b.mount_path(target))}, 201)

    @app.route("/v1/folders/<vol>/<fid>/quota", methods=["GET", "PUT"])
    async def quota(vol: str, fid: str) -> Response:
        b, fid = folder(vol, fid)
        if request.method == "PUT":
            await run(b.set_quota, fid, (await _body()).get("quota_bytes"))
        return _json({"quota_bytes": await run(b.get_quota, fid)})

    @app.route("/v1/folders/<vol>/<fid>/usage")
    async def usage(vol: str, fid: str) -> Response:
        b, fid = folder(vol, fid)
        return _json(asdict(await run(b.usage, fid)))

    @app.route("/v1/folders/<vol>/<fid>/files")
    async def files(vol: str, fid: str) -> Response:
        b, fid = folder(vol, fid)
        root = b.mount_path(fid)
        path = request.args.get("path", "")
        offset = _query_int("offset", 0, 2**40)
        limit = _query_int("limit", 2**40, 2**40)
        await run(fileops.stat_entry, root, path)  # errors before the stream starts
        batches = fileops.iter_dir(root, path)

        async def stream() -> AsyncIterator[bytes]:
            skipped = sent = 0
            yield b'{"items": ['
            try:
                while sent < limit:
                    batch = await run(next, batches, None)
                    if batch is None:
                        break
                    if skipped < offset:
                        skip = min(offset - skipped, len(batch))
                        skipped += skip
                        batch = batch[skip:]
                    batch = batch[: limit - sent]
                    if batch:
                        # One dumps per batch; its brackets dropped to splice into the array.
                        text = json.dumps([e.as_json() for e in batch])[1:-1]
                        yield (b", " if sent else b"") + text.encode()
                        sent += len(batch)
            finally:
                batches.close()
            yield b"]}"

        return Response(stream(), content_type="application/json")

    @app.route("/v1/folders/<vol>/<fid>/mkdir", methods=["POST"])
    async def mkdir(vol: str, fid: str) -> Response:
        b, fid = folder(vol, fid)
        body = await _body()
        await run(
            fileops.make_dir,
            b.mount_path(fid),
            body.get("path", ""),
            parents=bool(body.get("parents", False)),
            exist_ok=bool(body.get("exist_ok", False)),
            owner=volumes.owner,
        )
        return Response(b"", status=204)

    @app.route("/v1/folders/<vol>/<fid>/rename-file", methods=["POST"])
    async def rename_file(vol: str, fid: str) -> Response:
        b, fid = folder(vol, fid)
        body = await _body()
        await run(
            fileops.rename_path, b.mount_path(fid), body.get("path", ""), body.get("new_name", "")
        )
        return Response(b"", status=204)

    @app.route("/v1/folders/<vol>/<fid>/move-file", methods=["POST"])
    async def move_file(vol: str, fid: str) -> Response:
        b, fid = folder(vol, fid)
        body = await _body()
        await run(fileops.move_path, b.mount_path(fid), body.get("src", ""), body.get("dst", ""))
        return Response(b"", status=204)

    @app.route("/v1/folders/<vol>/<fid>/delete-files", methods=["POST"])
    async def delete_files(vol: str, fid: str) -> Response:
        b, fid = folder(vol, fid)
        body = await _body()
        paths = body.get("paths")
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise InvalidAPIParameters(f"paths {paths!r}; expected a list of strings")
        await run(
            fileops.delete_paths,
            b.mount_path(fid),
            paths,
            recursive=bool(body.get("recursive", False)),
        )
        return Response(b"", status=204)

    return app
