"""One agent id per Docker engine: a second agent with the same id is refused at start-up."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from backendai.agent.docker import DockerBackend
from backendai.agent.idlock import AgentIdLock
from backendai.config import AgentConfig
from backendai.errors import ConfigError
from tests.conftest import docker_answers, require


def test_a_second_holder_is_refused_until_the_first_lets_go(tmp_path: Path) -> None:
    first = AgentIdLock("unix:///var/run/docker.sock", "node-1", tmp_path)
    first.acquire()
    same = AgentIdLock("unix:///var/run/docker.sock", "node-1", tmp_path)
    with pytest.raises(ConfigError) as e:
        same.acquire()
    assert "'node-1'" in str(e.value)
    assert "agent.id" in str(e.value)
    # Another id, or the same id on another engine, is fine.
    other = AgentIdLock("unix:///var/run/docker.sock", "node-2", tmp_path)
    other.acquire()
    elsewhere = AgentIdLock("tcp://10.0.0.9:2375", "node-1", tmp_path)
    elsewhere.acquire()
    first.release()
    same.acquire()
    for lock in (same, other, elsewhere):
        lock.release()


def test_a_killed_holder_leaves_nothing_behind(tmp_path: Path) -> None:
    held = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from backendai.agent.idlock import AgentIdLock\n"
        f"AgentIdLock('e', 'n', Path({str(tmp_path)!r})).acquire()\n"
        "print('held', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", held], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"held\n"
        with pytest.raises(ConfigError) as e:
            AgentIdLock("e", "n", tmp_path).acquire()
        assert f"pid {proc.pid}" in str(e.value)
    finally:
        proc.kill()
        proc.wait()
    lock = AgentIdLock("e", "n", tmp_path)
    lock.acquire()
    lock.release()


async def test_two_docker_agents_with_one_id_are_not_both_started(tmp_path: Path) -> None:
    require(docker_answers(), "a Docker engine")
    config = AgentConfig(backend="docker")
    agent_id = f"idlock-{uuid.uuid4().hex[:8]}"
    first = await DockerBackend.open(config, agent_id=agent_id, scratch_dir=tmp_path / "a")
    try:
        with pytest.raises(ConfigError) as e:
            await DockerBackend.open(config, agent_id=agent_id, scratch_dir=tmp_path / "b")
        assert agent_id in str(e.value)
    finally:
        await first.aclose()
    again = await DockerBackend.open(config, agent_id=agent_id, scratch_dir=tmp_path / "b")
    await again.aclose()
