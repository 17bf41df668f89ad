"""Manager -> agent RPC over HTTP, authenticated with the cluster secret.

httpx errors are translated here into :class:`~backendai.errors.RPCError`
(with the HTTP status when the agent answered).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import trio

from ..config import Secret
from ..errors import RPCError
from .exec_channels import ExecChannels

__all__ = ["AgentClient", "open_agent_client"]


class AgentClient:
    def __init__(self, client: httpx.AsyncClient, secret: Secret, channels: ExecChannels) -> None:
        self._client = client
        self._secret = secret
        # Kept-alive execute channels, for the execute websocket's runs.
        self.exec = channels

    def websocket(self, addr: str, path: str) -> tuple[str, list[tuple[bytes, bytes]]]:
        """URL and headers for a websocket to the agent (pty)."""
        return f"ws://{addr}{path}", [
            (b"Authorization", f"Bearer {self._secret.reveal()}".encode())
        ]

    async def _call(self, method: str, addr: str, path: str, **kwargs: Any) -> Any:
        url = f"http://{addr}{path}"
        try:
            resp = await self._client.request(method, url, **kwargs)
        except httpx.TimeoutException as e:
            raise RPCError(f"agent at {addr} did not answer {method} {path} in time") from e
        except httpx.HTTPError as e:
            raise RPCError(f"agent at {addr} unreachable for {method} {path}: {e}") from e
        if resp.status_code >= 400:
            slug = ""
            try:
                body = resp.json()
                detail = body.get("msg") or body.get("title") or resp.text
                slug = str(body.get("type") or "").rpartition("/")[2]
            except ValueError:
                detail = resp.text
            raise RPCError(
                f"agent at {addr} refused {method} {path}: {resp.status_code} {detail}",
                status=resp.status_code,
                detail=str(detail),
                slug=slug,
            )
        return resp.json()

    async def create_kernel(self, addr: str, spec: dict[str, Any]) -> dict[str, Any]:
        """Create (pulling the image first when the spec names a registry): no read timeout,
        the launcher bounds the call (launch_timeout, plus pull_timeout for a pull)."""
        result: dict[str, Any] = await self._call(
            "POST", addr, "/v1/kernels", json=spec, timeout=httpx.Timeout(None, connect=10.0)
        )
        return result

    async def destroy_kernel(self, addr: str, kernel_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("DELETE", addr, f"/v1/kernels/{kernel_id}")
        return result

    async def kernel_logs(self, addr: str, kernel_id: str) -> str:
        result = await self._call("GET", addr, f"/v1/kernels/{kernel_id}/logs")
        return str(result["logs"])

    async def execute(self, addr: str, kernel_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """One execute step; the agent answers within ``body['flush']`` seconds."""
        timeout = float(body.get("flush", 2.0)) + 30.0
        result: dict[str, Any] = await self._call(
            "POST", addr, f"/v1/kernels/{kernel_id}/execute", json=body, timeout=timeout
        )
        return result

    async def restart_kernel(self, addr: str, spec: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self._call(
            "POST", addr, f"/v1/kernels/{spec['kernel_id']}/restart", json=spec, timeout=120.0
        )
        return result

    async def start_service(
        self, addr: str, kernel_id: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """Start an app in the kernel; the agent answers once it accepts connections."""
        wait = float(body.get("timeout", 120)) + 30.0
        result: dict[str, Any] = await self._call(
            "POST", addr, f"/v1/kernels/{kernel_id}/services", json=body, timeout=wait
        )
        return result

    @property
    def http(self) -> httpx.AsyncClient:
        """The client itself (it carries the cluster secret): app proxies share it."""
        return self._client

    async def interrupt(self, addr: str, kernel_id: str) -> None:
        await self._call("POST", addr, f"/v1/kernels/{kernel_id}/interrupt")

    async def complete(self, addr: str, kernel_id: str, code: str, options: dict[str, Any]) -> Any:
        body = {"code": code, "options": options}
        result = await self._call("POST", addr, f"/v1/kernels/{kernel_id}/complete", json=body)
        return result.get("result", [])

    async def list_files(self, addr: str, kernel_id: str, path: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call(
            "GET", addr, f"/v1/kernels/{kernel_id}/files", params={"path": path}
        )
        return result

    async def upload_file(
        self, addr: str, kernel_id: str, path: str, content: AsyncIterator[bytes]
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self._call(
            "POST",
            addr,
            f"/v1/kernels/{kernel_id}/files",
            params={"path": path},
            content=content,
            timeout=None,
        )
        return result

    @asynccontextmanager
    async def stream(
        self, addr: str, path: str, params: dict[str, str]
    ) -> AsyncIterator[httpx.Response]:
        """A streamed GET from the agent (file content, archives); errors as RPCError."""
        url = f"http://{addr}{path}"
        try:
            async with self._client.stream("GET", url, params=params, timeout=None) as resp:
                if resp.status_code >= 400:
                    await resp.aread()
                    try:
                        detail = resp.json().get("msg") or resp.text
                    except ValueError:
                        detail = resp.text
                    raise RPCError(
                        f"agent at {addr} refused GET {path}: {resp.status_code} {detail}",
                        status=resp.status_code,
                        detail=str(detail),
                    )
                yield resp
        except httpx.HTTPError as e:
            raise RPCError(f"agent at {addr} failed GET {path}: {e}") from e


@asynccontextmanager
async def open_agent_client(
    secret: Secret, *, request_timeout: float = 30.0
) -> AsyncIterator[AgentClient]:
    headers = {"Authorization": f"Bearer {secret.reveal()}"}
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=64)
    async with (
        httpx.AsyncClient(headers=headers, timeout=request_timeout, limits=limits) as client,
        trio.open_nursery() as nursery,
    ):
        channels = ExecChannels(nursery, secret)
        nursery.start_soon(channels.serve_sweeper)
        try:
            yield AgentClient(client, secret, channels)
        finally:
            channels.close()
            nursery.cancel_scope.cancel()
