"""The agent's RPC API for the manager: HTTP + JSON, bearer cluster secret."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from typing import Any

from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from ..config import Secret
from ..errors import (
    ImageNotFound,
    ImagePullError,
    KernelError,
    KernelNotFound,
)
from ..httpserver import guard_with_secret, problem_response
from .app_forward import AppForwarder
from .backend import KernelInfo
from .exec_channel import add_exec_channel
from .exec_routes import add_execution_routes
from .execution import ExecutionService
from .file_routes import UploadMiddleware, add_file_routes
from .registry import KernelRegistry, parse_spec
from .service_routes import add_service_routes

__all__ = ["create_rpc_app", "kernel_json"]

log = logging.getLogger(__name__)
# Pull failures that another attempt may fix.
PULL_RETRY_REASONS = frozenset({"unreachable", "failed"})


_error = problem_response


def _json(obj: Any, status: int = 200) -> Response:
    return Response(json.dumps(obj), status=status, content_type="application/json")


def kernel_json(info: KernelInfo) -> dict[str, Any]:
    d = asdict(info)
    d["slots"] = info.slots.to_json()
    d["allocation"] = info.allocation.to_json() if info.allocation is not None else None
    return d


def create_rpc_app(
    registry: KernelRegistry,
    secret: Secret,
    execution: ExecutionService | None = None,
    *,
    max_upload_bytes: int = 1 << 30,
    forwarder: AppForwarder | None = None,
) -> QuartTrio:
    """The agent's API; with *execution*, also code execution, terminals, files
    (uploads up to *max_upload_bytes*: ``agent.max_upload_bytes``) and apps (reached
    through *forwarder* where kernels do not share the host's network)."""
    app = QuartTrio("backendai.agent")
    guard_with_secret(app, secret)

    @app.errorhandler(KernelNotFound)
    async def not_found(e: KernelNotFound) -> Response:
        return _error(404, "kernel-not-found", str(e))

    @app.errorhandler(ImageNotFound)
    async def no_image(e: ImageNotFound) -> Response:
        return _error(404, "image-not-found", str(e))

    @app.errorhandler(ImagePullError)
    async def pull_failed(e: ImagePullError) -> Response:
        log.warning("image pull failed (%s): %s", e.reason, e)
        # 503: worth another attempt (the registry may come back); 422: it will not change.
        status = 503 if e.reason in PULL_RETRY_REASONS else 422
        return _error(status, f"image-pull-{e.reason}", str(e))

    @app.errorhandler(KernelError)
    async def kernel_error(e: KernelError) -> Response:
        log.warning("kernel operation failed: %s", e)
        return _error(500, "kernel-error", str(e))

    @app.errorhandler(HTTPException)
    async def http_error(e: HTTPException) -> Response:
        return _error(e.code or 500, "http-error", str(e.description))

    @app.route("/v1/health", methods=["GET"])
    async def health() -> Response:
        return _json({"agent_id": registry.agent_id, "backend": registry.backend.name})

    @app.route("/v1/kernels", methods=["POST"])
    async def create() -> Response:
        try:
            raw = json.loads(await request.get_data())
        except ValueError as e:
            return _error(400, "invalid-api-params", f"body is not JSON: {e}")
        info = await registry.create(parse_spec(raw, registry.scratch_dir))
        return _json(kernel_json(info), 201)

    @app.route("/v1/kernels/<kernel_id>/restart", methods=["POST"])
    async def restart(kernel_id: str) -> Response:
        try:
            raw = json.loads(await request.get_data())
        except ValueError as e:
            return _error(400, "invalid-api-params", f"body is not JSON: {e}")
        spec = parse_spec(raw, registry.scratch_dir)
        if spec.kernel_id != kernel_id:
            return _error(
                400,
                "invalid-api-params",
                f"spec is for kernel {spec.kernel_id!r}, not {kernel_id!r}",
            )
        return _json(kernel_json(await registry.restart(spec)))

    @app.route("/v1/kernels", methods=["GET"])
    async def list_() -> Response:
        return _json({"kernels": [kernel_json(k) for k in await registry.backend.list()]})

    @app.route("/v1/kernels/<kernel_id>", methods=["GET"])
    async def inspect(kernel_id: str) -> Response:
        return _json(kernel_json(await registry.backend.inspect(kernel_id)))

    @app.route("/v1/kernels/<kernel_id>", methods=["DELETE"])
    async def destroy(kernel_id: str) -> Response:
        return _json({"kernel_id": kernel_id, "exit_code": await registry.destroy(kernel_id)})

    @app.route("/v1/kernels/<kernel_id>/logs", methods=["GET"])
    async def logs(kernel_id: str) -> Response:
        return _json({"kernel_id": kernel_id, "logs": await registry.backend.logs(kernel_id)})

    if execution is not None:
        add_execution_routes(app, execution)
        add_exec_channel(app, execution)
        add_file_routes(app, execution)
        add_service_routes(app, execution, forwarder)
        app.asgi_app = UploadMiddleware(  # type: ignore[method-assign,assignment]
            app.asgi_app, execution, secret, max_upload_bytes
        )
    return app
