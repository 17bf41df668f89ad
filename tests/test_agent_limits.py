"""Code that misbehaves: floods of output, fork bombs, memory hogs, a kernel killed mid-run.

Each gets a clear outcome, memory stays bounded, and the agent and (where it
survives) the kernel keep working.
"""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator

import docker
import psutil
import pytest
import trio

from backendai.agent.execution import CONSOLE_LIMIT
from tests.exec_agent import ExecAgent, open_exec_agent
from tests.test_agent_execution import agent_kind  # noqa: F401 (the fixture)

MiB = 1024 * 1024
FLOOD = (
    "import sys\nline = 'x' * 1023 + '\\n'\nfor _ in range(200 * 1024):\n    sys.stdout.write(line)"
)


@pytest.fixture
async def agent(agent_kind: str) -> AsyncIterator[ExecAgent]:  # noqa: F811
    async with open_exec_agent(agent_kind) as opened:
        yield opened


@pytest.fixture
async def docker_agent(kernel_image: str) -> AsyncIterator[ExecAgent]:
    async with open_exec_agent("docker") as opened:
        yield opened


async def runner_process(agent: ExecAgent, kernel_id: str) -> psutil.Process:
    info = await agent.backend.inspect(kernel_id)
    if agent.kind == "local":
        return psutil.Process(int(info.backend_id))
    client = docker.from_env()
    try:
        init_pid = client.api.inspect_container(info.backend_id)["State"]["Pid"]
    finally:
        client.close()
    (runner,) = psutil.Process(init_pid).children()  # docker-init's one child
    return runner


class PeakRSS:
    def __init__(self, *procs: psutil.Process) -> None:
        self.procs = procs
        self.base = [p.memory_info().rss for p in procs]
        self.peak = list(self.base)

    async def watch(self) -> None:
        while True:
            for i, proc in enumerate(self.procs):
                self.peak[i] = max(self.peak[i], proc.memory_info().rss)
            await trio.sleep(0.05)

    def growth(self) -> list[float]:
        return [(peak - base) / MiB for peak, base in zip(self.peak, self.base, strict=True)]


async def test_200_mb_of_output_keeps_memory_bounded(agent: ExecAgent) -> None:
    kid = await agent.kernel()
    await agent.run(kid, "query", "print('warm')")
    rss = PeakRSS(psutil.Process(), await runner_process(agent, kid))
    received = 0
    async with trio.open_nursery() as nursery:
        nursery.start_soon(rss.watch)
        result = await agent.execute(kid, "query", FLOOD, run_id="flood", flush=0.5)
        received += sum(len(d) for _, d in result["console"])
        # A client that stops collecting: the agent's buffer stays bounded and the cell blocks.
        await trio.sleep(1.5)
        (run,) = agent.service.runs.values()
        assert run.size <= CONSOLE_LIMIT + 512 * 1024
        while result["status"] != "finished":
            result = await agent.execute(kid, "continue", run_id="flood", flush=2)
            received += sum(len(d) for k, d in result["console"] if k == "stdout")
        nursery.cancel_scope.cancel()
    assert received == 200 * MiB
    agent_growth, runner_growth = rss.growth()
    # The agent's figure includes this test's HTTP client decoding 1 MiB results.
    assert agent_growth < 64, f"agent process grew {agent_growth:.0f} MiB"
    assert runner_growth < 32, f"runner grew {runner_growth:.0f} MiB"


async def test_fork_bomb_is_contained(docker_agent: ExecAgent) -> None:
    agent = docker_agent
    kid = await agent.kernel()
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    first = await agent.execute(
        kid, "query", bomb, run_id="bomb", options={"exec_timeout": 4}, flush=2
    )
    # Meanwhile this host can still start processes: the pids limit holds inside the kernel.
    assert (await trio.run_process(["true"])).returncode == 0
    result = first
    while result["status"] not in ("finished", "exec-timeout"):
        result = await agent.execute(kid, "continue", run_id="bomb", flush=5)
    assert result["status"] == "exec-timeout"
    info = await agent.backend.inspect(kid)
    assert info.state == "running"
    client = docker.from_env()
    try:
        assert client.api.inspect_container(info.backend_id)["HostConfig"]["PidsLimit"] == 4096
    finally:
        client.close()
    with trio.fail_after(60):
        while True:  # the kernel recovers once the bomb's processes are reaped
            _, out, _ = await agent.run(kid, "query", "print('alive')")
            if out == "alive\n":
                break
    _, out, _ = await agent.run(kid, "batch", options={"exec": "ps -e -o pid= | wc -l"})
    assert int(out) < 20


async def test_memory_hog_is_reported_as_out_of_memory(docker_agent: ExecAgent) -> None:
    agent = docker_agent
    kid = await agent.kernel(mem="256m")
    await agent.run(kid, "query", "before = 1")
    results, _, err = await agent.run(kid, "query", "hog = 'x' * (1024 ** 3)")
    assert (results[-1]["status"], results[-1]["exit_code"]) == ("finished", 137)
    assert "killed by the out-of-memory killer (memory limit of 256 MiB reached)" in err
    results, out, err = await agent.run(kid, "query", "print('before' in dir())")
    assert out == "False\n"
    assert (
        "a new Python interpreter started: the previous one was killed by the out-of-memory" in err
    )
    results, _, err = await agent.run(
        kid, "batch", options={"exec": "python3 -c \"x = 'x' * 1024**3\""}
    )
    assert results[-1]["exit_code"] == 137
    assert "out-of-memory killer" in err
    assert (await agent.backend.inspect(kid)).state == "running"


async def test_a_kernel_killed_mid_run_ends_the_run_with_its_exit_code(
    docker_agent: ExecAgent,
) -> None:
    agent = docker_agent
    kid = await agent.kernel()
    first = await agent.execute(
        kid, "query", "import time\ntime.sleep(60)", run_id="doomed", flush=0.2
    )
    assert first["status"] == "continued"
    info = await agent.backend.inspect(kid)
    await trio.run_process(["docker", "kill", info.backend_id], stdout=subprocess.DEVNULL)
    result = await agent.execute(kid, "continue", run_id="doomed", flush=10)
    assert (result["status"], result["exit_code"]) == ("finished", 137)
    assert result["console"] == [
        [
            "stderr",
            "\n[the kernel exited with code 137 (killed: out of memory, or SIGKILL) before run 'doomed' finished]\n",
        ]
    ]
