"""Manager -> agent RPC over HTTP, authenticated with the cluster secret.

httpx errors are translated here into :class:`~backendai.errors.RPCError`
(with the HTTP status when the agent answered).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from ..config import Secret
from ..errors import RPCError

__all__ = ["AgentClient", "open_agent_client"]


class AgentClient:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def _call(self, method: str, addr: str, path: str, **kwargs: Any) -> Any:
        url = f"http://{addr}{path}"
        try:
            resp = await self._client.request(method, url, **kwargs)
        except httpx.TimeoutException as e:
            raise RPCError(f"agent at {addr} did not answer {method} {path} in time") from e
        except httpx.HTTPError as e:
            raise RPCError(f"agent at {addr} unreachable for {method} {path}: {e}") from e
        if resp.status_code >= 400:
            try:
                body = resp.json()
                detail = body.get("msg") or body.get("title") or resp.text
            except ValueError:
                detail = resp.text
            raise RPCError(
                f"agent at {addr} refused {method} {path}: {resp.status_code} {detail}",
                status=resp.status_code,
            )
        return resp.json()

    async def create_kernel(self, addr: str, spec: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("POST", addr, "/v1/kernels", json=spec)
        return result

    async def destroy_kernel(self, addr: str, kernel_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("DELETE", addr, f"/v1/kernels/{kernel_id}")
        return result

    async def kernel_logs(self, addr: str, kernel_id: str) -> str:
        result = await self._call("GET", addr, f"/v1/kernels/{kernel_id}/logs")
        return str(result["logs"])


@asynccontextmanager
async def open_agent_client(
    secret: Secret, *, request_timeout: float = 30.0
) -> AsyncIterator[AgentClient]:
    headers = {"Authorization": f"Bearer {secret.reveal()}"}
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=64)
    async with httpx.AsyncClient(headers=headers, timeout=request_timeout, limits=limits) as client:
        yield AgentClient(client)
