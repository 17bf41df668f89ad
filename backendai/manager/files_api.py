"""Files of a session's main kernel: upload (multipart), download (tar parts), listing.

Bytes stream through: an upload goes part by part to the agent, a download is
relayed from the agent's tar stream, so the manager holds at most a chunk.
Paths are relative to ``/home/work``; the runner refuses anything that leaves it.
"""

from __future__ import annotations

import json
import posixpath
import secrets
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import unquote

from quart import Response, request
from quart_trio import QuartTrio

from ..errors import InvalidAPIParameters, PayloadTooLarge, RPCError
from .api import json_response
from .context import ManagerContext
from .kernel_access import KernelTarget, api_error, caller_target

__all__ = ["add_file_routes", "check_relative_path"]

_CHUNK = 256 * 1024


def check_relative_path(path: str) -> str:
    """A path under /home/work, normalised; ``..`` escapes and absolute paths elsewhere are refused."""
    if not path or "\x00" in path:
        raise InvalidAPIParameters(f"invalid path {path!r}; expected a file path under /home/work")
    if path == "/home/work" or path.startswith("/home/work/"):
        path = path[len("/home/work/") :] or "."
    if path.startswith("/"):
        raise InvalidAPIParameters(f"path {path!r} is outside /home/work")
    norm = posixpath.normpath(path)
    if norm == ".." or norm.startswith("../"):
        raise InvalidAPIParameters(f"path {path!r} leaves /home/work")
    return norm


async def _body_or_args() -> dict[str, Any]:
    """The official client sends GET requests with a JSON body; our CLI uses the query."""
    raw = await request.get_data()
    body: Any = {}
    if raw:
        try:
            body = json.loads(raw)
        except ValueError as e:
            raise InvalidAPIParameters(f"request body is not valid JSON: {e}") from None
    if not isinstance(body, dict):
        raise InvalidAPIParameters("request body must be a JSON object")
    merged: dict[str, Any] = {k: v for k, v in request.args.items() if k != "owner_access_key"}
    if "files" in request.args:
        merged["files"] = request.args.getlist("files")
    merged.update(body)
    return merged


def add_file_routes(app: QuartTrio, ctx: ManagerContext) -> None:
    limit = ctx.config.manager.max_upload_bytes

    @app.route("/session/<ref>/upload", methods=["POST"])
    async def upload(ref: str) -> Response:
        target = await caller_target(ctx, ref)
        request.max_content_length = limit
        if request.content_length is not None and request.content_length > limit:
            raise PayloadTooLarge(
                f"upload of {request.content_length} bytes exceeds the limit of {limit} bytes"
            )
        files = await request.files
        if not files:
            raise InvalidAPIParameters(
                "no files in the multipart body; expected one or more file parts"
            )
        stored = []
        for storage in files.values():
            # aiohttp (the official client) percent-encodes the part's filename.
            name = check_relative_path(unquote(storage.filename or ""))

            async def chunks(f: Any = storage) -> AsyncIterator[bytes]:
                while data := f.stream.read(_CHUNK):
                    yield data

            try:
                await ctx.agents.upload_file(target.agent_addr, target.kernel_id, name, chunks())
            except RPCError as e:
                raise api_error(e, f"uploading {name!r} to session {target.session_name!r}") from e
            stored.append(name)
        return json_response({"files": stored})

    @app.route("/session/<ref>/files", methods=["GET"])
    async def list_files(ref: str) -> Response:
        target = await caller_target(ctx, ref)
        path = check_relative_path(str((await _body_or_args()).get("path") or "."))
        try:
            listing = await ctx.agents.list_files(target.agent_addr, target.kernel_id, path)
        except RPCError as e:
            raise api_error(e, f"listing {path!r} in session {target.session_name!r}") from e
        entries = [
            {
                "filename": e["name"],
                "size": e.get("size", 0),
                "mtime": e.get("mtime", 0),
                "mode": e.get("mode", ""),
                "type": e.get("type", ""),
            }
            for e in listing.get("files", [])
        ]
        # The official client expects the list as a JSON string.
        return json_response(
            {"files": json.dumps(entries), "errors": "", "abspath": listing.get("abspath", path)}
        )

    @app.route("/session/<ref>/download_single", methods=["GET"])
    async def download_single(ref: str) -> Response:
        target = await caller_target(ctx, ref)
        args = await _body_or_args()
        path = check_relative_path(str(args.get("file") or args.get("path") or ""))
        return await _relay(target, "/files/content", path, "application/octet-stream")

    @app.route("/session/<ref>/download", methods=["GET", "POST"])
    async def download(ref: str) -> Response:
        target = await caller_target(ctx, ref)
        names = (await _body_or_args()).get("files") or []
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise InvalidAPIParameters("files: expected a non-empty list of paths under /home/work")
        paths = [check_relative_path(n) for n in names]
        # Check each exists before the response starts: an error then is still a clean 4xx.
        for p in paths:
            parent = posixpath.dirname(p) or "."
            try:
                listing = await ctx.agents.list_files(target.agent_addr, target.kernel_id, parent)
            except RPCError as e:
                raise api_error(e, f"downloading {p!r} from session {target.session_name!r}") from e
            if (
                posixpath.basename(p) not in {e["name"] for e in listing.get("files", [])}
                and p != "."
            ):
                raise InvalidAPIParameters(f"no file {p!r} in session {target.session_name!r}")
        boundary = secrets.token_hex(16)

        async def parts() -> AsyncIterator[bytes]:
            for p in paths:
                yield (
                    f"--{boundary}\r\nContent-Type: application/x-tar\r\n"
                    f'Content-Disposition: attachment; filename="{posixpath.basename(p) or "work"}.tar"\r\n\r\n'
                ).encode()
                async with ctx.agents.stream(
                    target.agent_addr, f"/v1/kernels/{target.kernel_id}/files/archive", {"path": p}
                ) as resp:
                    async for chunk in resp.aiter_bytes(_CHUNK):
                        yield chunk
                yield b"\r\n"
            yield f"--{boundary}--\r\n".encode()

        resp = Response(parts(), content_type=f"multipart/mixed; boundary={boundary}")
        resp.timeout = None
        return resp

    async def _relay(target: KernelTarget, suffix: str, path: str, content_type: str) -> Response:
        # Open the agent stream first so that a missing file is a clean error.
        cm = ctx.agents.stream(
            target.agent_addr, f"/v1/kernels/{target.kernel_id}{suffix}", {"path": path}
        )
        try:
            agent_resp = await cm.__aenter__()
        except RPCError as e:
            raise api_error(e, f"downloading {path!r} from session {target.session_name!r}") from e

        async def body() -> AsyncIterator[bytes]:
            try:
                async for chunk in agent_resp.aiter_bytes(_CHUNK):
                    yield chunk
            finally:
                await cm.__aexit__(None, None, None)

        resp = Response(body(), content_type=content_type)
        resp.headers["Content-Disposition"] = f'attachment; filename="{posixpath.basename(path)}"'
        resp.timeout = None
        return resp
