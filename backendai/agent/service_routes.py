"""Apps in kernels over the agent's RPC API.

::

    POST /v1/kernels/{kid}/services  {name, command, route, port?, env?, timeout?}
                                     -> {name, port, already, forwarded}

The agent picks a free port unless the manager names one, and asks the
kernel's runner to start the app there; the answer comes once the app accepts
connections.  The ``port`` answered is where app proxies reach the app on this
agent's host: the app's own where kernels share the host's network, else that
of a forward through the kernel runner (:mod:`.app_forward`), which admits
connections that open with the preamble of ``route`` (``<session id>/<app>``).
"""

from __future__ import annotations

import json
import socket
from typing import Any

from quart import Response, request
from quart_trio import QuartTrio

from ..errors import InvalidAPIParameters
from .app_forward import AppForwarder
from .execution import ExecutionService

__all__ = ["add_service_routes", "free_port"]


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (the kernel binds it moments later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def _service_request(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise InvalidAPIParameters(
            "body must be a JSON object {name, command, port?, env?, timeout?}"
        )
    port = raw.get("port") or free_port()
    if not isinstance(port, int) or not 0 < port < 65536:
        raise InvalidAPIParameters(f"port: invalid value {port!r}; expected 1-65535")
    timeout = raw.get("timeout", 120)
    return {
        "op": "start-service",
        "name": raw.get("name"),
        "command": raw.get("command"),
        "port": port,
        "env": raw.get("env") or {},
        "timeout": timeout,
    }


def add_service_routes(
    app: QuartTrio, execution: ExecutionService, forwarder: AppForwarder | None
) -> None:
    """*forwarder*: None where kernels share the host's network (apps are reached directly)."""

    @app.route("/v1/kernels/<kernel_id>/services", methods=["POST"])
    async def start_service(kernel_id: str) -> Response:
        try:
            raw = json.loads(await request.get_data() or b"{}")
        except ValueError as e:
            raise InvalidAPIParameters(f"body is not JSON: {e}") from None
        message = _service_request(raw)
        route = raw.get("route")
        if not isinstance(route, str) or not route:
            route = f"{kernel_id}/{message['name']}"
        reply = await execution.request(
            kernel_id, message, f"kernel {kernel_id!r}: app {message['name']!r}"
        )
        port = int(reply["port"])
        if forwarder is not None:
            port = await forwarder.forward(kernel_id, str(reply["name"]), port, route)
        body = {
            "name": reply["name"],
            "port": port,
            "already": reply.get("already", False),
            # Proxies open connections to a forward with its preamble.
            "forwarded": forwarder is not None,
        }
        return Response(json.dumps(body), content_type="application/json")
