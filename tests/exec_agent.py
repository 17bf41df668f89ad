"""An agent's RPC server with code execution, on a real compute backend, for tests.

``open_exec_agent(kind)`` serves the agent's API (port 0) over the ``local`` or
``docker`` backend with the execution service running, and gives a client
signed with the cluster secret plus helpers to make kernels and run code.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import trio

from backendai.agent.backend import ComputeBackend
from backendai.agent.docker import DockerBackend
from backendai.agent.execution import ExecutionService
from backendai.agent.local import IMAGE as LOCAL_IMAGE
from backendai.agent.local import LocalBackend
from backendai.agent.registry import KernelRegistry, parse_spec
from backendai.agent.rpc import create_rpc_app
from backendai.bus.memory import MemoryEventBus
from backendai.config import AgentConfig, Secret
from backendai.httpserver import serve_http
from backendai.sched.slots import ResourceSlots

from .conftest import KERNEL_IMAGE, wait_for_path

__all__ = ["SECRET", "ExecAgent", "open_exec_agent"]

SECRET = "exec-test-secret"
START_TIMEOUT = 30.0


@dataclass
class ExecAgent:
    kind: str
    url: str
    http: httpx.AsyncClient
    registry: KernelRegistry
    service: ExecutionService
    scratch: Path

    @property
    def backend(self) -> ComputeBackend:
        return self.registry.backend

    @property
    def image(self) -> str:
        return KERNEL_IMAGE if self.kind == "docker" else LOCAL_IMAGE

    async def kernel(self, *, mem: str = "256m", image: str | None = None) -> str:
        """A new running kernel whose runner answers; its id."""
        kernel_id = uuid.uuid4().hex[:12]
        spec = {
            "kernel_id": kernel_id,
            "session_id": f"s-{kernel_id}",
            "image": image or self.image,
            "slots": ResourceSlots.parse({"cpu": "1", "mem": mem}).to_json(),
        }
        await self.registry.create(parse_spec(spec, self.scratch))
        with trio.fail_after(START_TIMEOUT):
            await wait_for_path(self.scratch / kernel_id / "ipc" / "runner.sock")
        return kernel_id

    async def post(self, path: str, body: Any = None, **kw: Any) -> httpx.Response:
        return await self.http.post(path, json=body, **kw)

    async def execute(
        self,
        kernel_id: str,
        mode: str,
        code: str = "",
        *,
        run_id: str | None = None,
        options: dict[str, Any] | None = None,
        flush: float = 2.0,
    ) -> dict[str, Any]:
        """One execute call; raises on an error status."""
        body = {
            "mode": mode,
            "run_id": run_id or uuid.uuid4().hex[:8],
            "code": code,
            "options": options or {},
            "flush": flush,
        }
        resp = await self.post(f"/v1/kernels/{kernel_id}/execute", body, timeout=flush + 60)
        assert resp.status_code == 200, resp.text
        result: dict[str, Any] = resp.json()
        return result

    async def run(
        self,
        kernel_id: str,
        mode: str,
        code: str = "",
        *,
        options: dict[str, Any] | None = None,
        inputs: list[str] | None = None,
        flush: float = 2.0,
    ) -> tuple[list[dict[str, Any]], str, str]:
        """Execute to the end (continuing, answering input); results, stdout, stderr."""
        run_id = uuid.uuid4().hex[:8]
        answers = list(inputs or [])
        results = [
            await self.execute(kernel_id, mode, code, run_id=run_id, options=options, flush=flush)
        ]
        while results[-1]["status"] not in ("finished", "exec-timeout"):
            if results[-1]["status"] == "waiting-input":
                step = await self.execute(
                    kernel_id, "input", answers.pop(0), run_id=run_id, flush=flush
                )
            else:
                step = await self.execute(kernel_id, "continue", run_id=run_id, flush=flush)
            results.append(step)
        out = "".join(d for r in results for k, d in r["console"] if k == "stdout")
        err = "".join(d for r in results for k, d in r["console"] if k == "stderr")
        return results, out, err


@asynccontextmanager
async def open_exec_agent(
    kind: str, *, run_idle_timeout: float = 600.0, max_upload_bytes: int = 1 << 30
) -> AsyncIterator[ExecAgent]:
    # Short: unix socket paths must fit in 108 bytes.
    scratch = Path(tempfile.mkdtemp(prefix="bai-"))
    config = AgentConfig(network_mode="none", stop_timeout=2.0)
    agent_id = f"exec-{uuid.uuid4().hex[:8]}"
    cls = DockerBackend if kind == "docker" else LocalBackend
    backend = await cls.open(config, agent_id=agent_id, scratch_dir=scratch)
    registry = KernelRegistry(backend, MemoryEventBus(), agent_id, scratch)
    service = ExecutionService(registry, run_idle_timeout=run_idle_timeout)
    app = create_rpc_app(registry, Secret(SECRET), service, max_upload_bytes=max_upload_bytes)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(service.serve)
            port = await nursery.start(serve_http, app, "127.0.0.1", 0, "exec-test-agent")
            url = f"http://127.0.0.1:{port}"
            headers = {"Authorization": f"Bearer {SECRET}"}
            async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as http:
                yield ExecAgent(kind, url, http, registry, service, scratch)
            nursery.cancel_scope.cancel()
    finally:
        with trio.move_on_after(60, shield=True):
            for info in await backend.list():
                await registry.destroy(info.kernel_id)
            await backend.aclose()
        shutil.rmtree(scratch, ignore_errors=True)
