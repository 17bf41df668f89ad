"""Running code in a session over REST: execute (with the 2 s ``continued`` protocol),
interrupt, complete, restart.

The agent keeps each run's state (its runner connection and a bounded console
buffer), so any manager can answer the next ``continue`` of a run.
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from quart import Response, g
from quart_trio import QuartTrio

from ..db.tables import agents, kernels, sessions
from ..errors import InvalidAPIParameters, RPCError
from .api import Caller, json_body, json_response
from .app_proxies import remove_session_routes
from .context import ManagerContext
from .kernel_access import KernelTarget, api_error, caller_target, main_kernel
from .launcher import _agent_spec as agent_spec
from .session_api import owner_scope
from .session_ops import resolve_session

__all__ = ["FLUSH_SECONDS", "add_exec_routes", "execute_step", "result_json"]

# A REST execute call returns after about this much collected output (Backend.AI's contract).
FLUSH_SECONDS = 2.0
_MODES = ("query", "batch", "continue", "input")


def result_json(run_id: str, r: dict[str, Any]) -> dict[str, Any]:
    """The agent's answer in the Backend.AI result shape."""
    return {
        "runId": run_id,
        "status": r["status"],
        "exitCode": r.get("exit_code"),
        "console": r.get("console", []),
        "options": r.get("options") or {},
        # The official client prints each file's name and url.
        "files": [{**f, "url": f.get("url") or _file_url(f)} for f in r.get("files", [])],
    }


def _file_url(f: dict[str, Any]) -> str:
    path = str(f.get("path") or f".output/{f.get('name', '')}")
    return f"download_single?file={quote(path)}"


def batch_options(options: dict[str, Any]) -> dict[str, Any]:
    """Batch commands as the runner takes them: unset build/clean are skipped, unset exec is the default."""
    out = dict(options)
    for key in ("build", "clean"):
        out[key] = options.get(key) or ""
    out["exec"] = options.get("exec") or "*"
    for key in ("build", "clean", "exec"):
        if not isinstance(out[key], str):
            raise InvalidAPIParameters(
                f"options.{key}: invalid value {out[key]!r}; expected a shell command"
            )
    return out


def parse_execute(body: Any) -> tuple[str, str, str, dict[str, Any]]:
    """(mode, run id, code, options) of an execute request, checked."""
    if not isinstance(body, dict):
        raise InvalidAPIParameters(f"request body must be a JSON object, got {type(body).__name__}")
    mode = body.get("mode", "query")
    if mode == "user-input":
        mode = "input"
    if mode not in (*_MODES, "complete"):
        raise InvalidAPIParameters(
            f"mode: invalid value {mode!r}; expected one of {', '.join(_MODES)}, complete"
        )
    code = body.get("code") or ""
    if not isinstance(code, str):
        raise InvalidAPIParameters(
            f"code: invalid value of type {type(code).__name__}; expected a string"
        )
    options = body.get("options") or {}
    if not isinstance(options, dict):
        raise InvalidAPIParameters(f"options: invalid value {options!r}; expected an object")
    run_id = body.get("runId") or body.get("run_id")
    if run_id is None:
        if mode in ("continue", "input"):
            raise InvalidAPIParameters(f"runId: missing; mode {mode!r} continues an earlier run")
        run_id = secrets.token_hex(8)
    if not isinstance(run_id, str) or not 1 <= len(run_id) <= 64:
        raise InvalidAPIParameters(
            f"runId: invalid value {run_id!r}; expected a string of 1-64 characters"
        )
    if mode == "batch":
        options = batch_options(options)
    return mode, run_id, code, options


async def execute_step(
    ctx: ManagerContext,
    target: KernelTarget,
    mode: str,
    run_id: str,
    code: str,
    options: dict[str, Any],
    flush: float,
) -> dict[str, Any]:
    body = {"mode": mode, "run_id": run_id, "code": code, "options": options, "flush": flush}
    try:
        r = await ctx.agents.execute(target.agent_addr, target.kernel_id, body)
    except RPCError as e:
        raise api_error(e, f"executing in session {target.session_name!r}") from e
    return result_json(run_id, r)


def add_exec_routes(app: QuartTrio, ctx: ManagerContext) -> None:
    @app.route("/session/<ref>", methods=["POST"])
    async def execute(ref: str) -> Response:
        mode, run_id, code, options = parse_execute(await json_body())
        target = await caller_target(ctx, ref)
        if mode == "complete":
            return json_response({"result": await _complete(target, code, options)})
        return json_response(
            {"result": await execute_step(ctx, target, mode, run_id, code, options, FLUSH_SECONDS)}
        )

    @app.route("/session/<ref>/interrupt", methods=["POST"])
    async def interrupt(ref: str) -> Response:
        target = await caller_target(ctx, ref)
        try:
            await ctx.agents.interrupt(target.agent_addr, target.kernel_id)
        except RPCError as e:
            raise api_error(e, f"interrupting session {target.session_name!r}") from e
        return json_response({})

    @app.route("/session/<ref>/complete", methods=["POST"])
    async def complete(ref: str) -> Response:
        body = await json_body()
        if not isinstance(body, dict) or not isinstance(body.get("code", ""), str):
            raise InvalidAPIParameters(
                "body must be an object with a string 'code' and optional 'options'"
            )
        target = await caller_target(ctx, ref)
        return json_response(
            {"result": await _complete(target, body.get("code", ""), body.get("options") or {})}
        )

    async def _complete(target: KernelTarget, code: str, options: dict[str, Any]) -> Any:
        try:
            return await ctx.agents.complete(target.agent_addr, target.kernel_id, code, options)
        except RPCError as e:
            raise api_error(e, f"completing in session {target.session_name!r}") from e

    @app.route("/session/<ref>", methods=["PATCH"])
    async def restart(ref: str) -> Response:
        """Restart every kernel of the session: fresh processes, same containers and files."""
        caller: Caller = g.caller
        s = await resolve_session(ctx, ref, owner_scope(caller))
        await main_kernel(ctx, s)

        def _all(c: sa.Connection) -> list[dict[str, Any]]:
            rows = c.execute(
                sa.select(
                    kernels,
                    agents.c.rpc_addr,
                    sessions.c.environ,
                    sessions.c.mounts,
                    sessions.c.startup_command,
                )
                .join(agents, agents.c.id == kernels.c.agent_id)
                .join(sessions, sessions.c.id == kernels.c.session_id)
                .where(kernels.c.session_id == s["id"], kernels.c.status == "RUNNING")
            )
            return [dict(r) for r in rows.mappings()]

        # Its apps end with the processes: their routes go (a clear 404, not a 502), and
        # starting an app again registers it anew.
        await remove_session_routes(ctx, s["id"])
        for k in await ctx.db.run(_all):
            try:
                await ctx.agents.restart_kernel(k["rpc_addr"], agent_spec(k))
            except RPCError as e:
                raise api_error(e, f"restarting session {s['name']!r}") from e
        return json_response({})
