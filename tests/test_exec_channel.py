"""The agent's execute channel (``/v1/exec``) and the manager's pool of them, on a real agent
with the local backend and with real Docker: runs one after another on a kept-alive
channel, input, a channel closed mid-run, bad messages, a stale pooled channel."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio_websocket

from backendai.agent import exec_channel
from backendai.config import Secret
from backendai.errors import RPCError
from backendai.manager import exec_channels
from backendai.manager.exec_channels import ExecChannel, ExecChannels
from tests.exec_agent import SECRET, ExecAgent, open_exec_agent

AUTH = [(b"Authorization", f"Bearer {SECRET}".encode())]


@pytest.fixture(params=["local", "docker"])
async def agent(request: pytest.FixtureRequest) -> AsyncIterator[ExecAgent]:
    if request.param == "docker":
        request.getfixturevalue("kernel_image")
    async with open_exec_agent(request.param) as opened:
        yield opened


@pytest.fixture
async def channels() -> AsyncIterator[ExecChannels]:
    async with trio.open_nursery() as nursery:
        pool = ExecChannels(nursery, Secret(SECRET))
        yield pool
        pool.close()
        nursery.cancel_scope.cancel()


def _addr(agent: ExecAgent) -> str:
    return agent.url.removeprefix("http://")


def _execute(kernel_id: str, code: str, mode: str = "query") -> dict[str, Any]:
    return {
        "op": "execute",
        "kernel_id": kernel_id,
        "run_id": uuid.uuid4().hex[:8],
        "mode": mode,
        "code": code,
        "options": {},
    }


class _Borrowed:
    """A channel borrowed for one run, and the run's id (its frames carry it)."""

    def __init__(self, channel: ExecChannel, run_id: str) -> None:
        self.channel = channel
        self.run_id = run_id

    async def receive(self) -> list[dict[str, Any]]:
        return await self.channel.receive(self.run_id)

    async def to_end(self, answers: list[str] | None = None) -> list[dict[str, Any]]:
        """The frames of the run, answering input requests from *answers*."""
        frames: list[dict[str, Any]] = []
        with trio.fail_after(60):
            while True:
                batch = await self.receive()
                frames.extend(batch)
                ops = [f["op"] for f in batch]
                if "finished" in ops or "error" in ops:
                    self.channel.reusable = True
                    return frames
                if "waiting-input" in ops:
                    await self.channel.send({"op": "input", "data": (answers or []).pop(0)})


@asynccontextmanager
async def _borrow(
    pool: ExecChannels, addr: str, execute: dict[str, Any]
) -> AsyncIterator[_Borrowed]:
    async with pool.run(addr, execute) as channel:
        yield _Borrowed(channel, execute["run_id"])


def _stdout(frames: list[dict[str, Any]]) -> str:
    return "".join(
        d for f in frames if f["op"] == "console" for k, d in f["items"] if k == "stdout"
    )


async def test_runs_share_one_kept_alive_channel(agent: ExecAgent, channels: ExecChannels) -> None:
    kid = await agent.kernel()
    async with _borrow(channels, _addr(agent), _execute(kid, "x = 41")) as first:
        frames = await first.to_end()
    assert frames[-1] == {
        "op": "finished",
        "run_id": frames[-1]["run_id"],
        "status": "finished",
        "exit_code": 0,
        "files": [],
    }
    code = "name = input('who? ')\nprint(x + 1, name)"
    async with _borrow(channels, _addr(agent), _execute(kid, code)) as second:
        frames = await second.to_end(["ada"])
    assert second.channel is first.channel  # the same connection, taken from the pool
    assert [f["op"] for f in frames if f["op"] != "console"] == ["waiting-input", "finished"]
    assert _stdout(frames) == "who? 42 ada\n"


async def test_batch_steps_come_as_frames(agent: ExecAgent, channels: ExecChannels) -> None:
    kid = await agent.kernel()
    execute = _execute(kid, "", mode="batch")
    execute["options"] = {"build": "echo built", "exec": "echo ran; exit 3", "clean": ""}
    async with _borrow(channels, _addr(agent), execute) as channel:
        frames = await channel.to_end()
    steps = [(f["status"], f["exit_code"]) for f in frames if f["op"] in ("step", "finished")]
    assert steps == [("build-finished", 0), ("finished", 3)]
    assert _stdout(frames) == "built\nran\n"


async def test_closing_a_channel_mid_run_interrupts_the_run(
    agent: ExecAgent, channels: ExecChannels
) -> None:
    kid = await agent.kernel()
    loop = "import time\nwhile True:\n    print('tick', flush=True)\n    time.sleep(0.05)"
    async with _borrow(channels, _addr(agent), _execute(kid, loop)) as channel:
        with trio.fail_after(30):
            while "tick" not in _stdout(await channel.receive()):
                pass
    # Not given back in order: the pool closed it, and the runner stopped the run.
    with trio.fail_after(30):
        while True:
            async with _borrow(channels, _addr(agent), _execute(kid, "print('free')")) as channel:
                frames = await channel.to_end()
            if frames[-1]["op"] == "finished":
                break
            assert frames[-1]["status"] == 409, frames  # still stopping: busy
            await trio.sleep(0.1)
    assert _stdout(frames) == "free\n"


async def test_bad_messages_get_errors_and_the_channel_carries_on(agent: ExecAgent) -> None:
    kid = await agent.kernel()
    url = f"ws://{_addr(agent)}/v1/exec"
    async with trio_websocket.open_websocket_url(url, extra_headers=AUTH) as ws:

        async def ask(message: str) -> list[dict[str, Any]]:
            await ws.send_message(message)
            return await frames_of(ws)

        async def frames_of(ws: trio_websocket.WebSocketConnection) -> list[dict[str, Any]]:
            frames: list[dict[str, Any]] = json.loads(await ws.get_message())["frames"]
            return frames

        [bad] = await ask("{not json")
        assert (bad["op"], bad["status"]) == ("error", 400)
        assert "not JSON" in bad["message"]
        # An input between runs (its run ended while the user typed) is dropped unanswered.
        await ws.send_message(json.dumps({"op": "input", "data": "late"}))
        [bad] = await ask(json.dumps({"op": "status"}))
        assert bad["status"] == 400
        assert "expected an 'execute' message between runs, got op 'status'" in bad["message"]
        [bad] = await ask(json.dumps({**_execute(kid, ""), "mode": "continue"}))
        assert bad["status"] == 400
        assert "'continue'" in bad["message"]
        [bad] = await ask(json.dumps({**_execute(kid, ""), "run_id": ""}))
        assert bad["status"] == 400
        assert "run_id" in bad["message"]
        [gone] = await ask(json.dumps(_execute("no-such-kernel", "print(1)")))
        assert gone["status"] == 404
        frames = await ask(json.dumps(_execute(kid, "print('still here')")))
        while frames[-1]["op"] != "finished":
            frames += await frames_of(ws)
        assert _stdout(frames) == "still here\n"
        # Anything but input during a run breaks the protocol: the channel closes.
        await ws.send_message(json.dumps(_execute(kid, "input('? ')")))
        with trio.fail_after(30):
            while "waiting-input" not in [f["op"] for f in await frames_of(ws)]:
                pass
        await ws.send_message(json.dumps(_execute(kid, "print(2)")))
        with trio.fail_after(10), pytest.raises(trio_websocket.ConnectionClosed) as closed:
            await ws.get_message()
        assert closed.value.reason.code == 1008


async def test_a_stale_pooled_channel_is_replaced(agent: ExecAgent, channels: ExecChannels) -> None:
    kid = await agent.kernel()
    async with _borrow(channels, _addr(agent), _execute(kid, "pass")) as first:
        await first.to_end()
    await first.channel.ws.aclose()  # as when the agent restarted: the idle channel is dead
    async with _borrow(channels, _addr(agent), _execute(kid, "print('new')")) as second:
        frames = await second.to_end()
    assert second.channel is not first.channel
    assert _stdout(frames) == "new\n"


async def test_a_wrong_secret_is_refused(agent: ExecAgent) -> None:
    async with trio.open_nursery() as nursery:
        pool = ExecChannels(nursery, Secret("wrong"))
        with pytest.raises(RPCError, match="refused the execute channel") as refused:
            async with _borrow(pool, _addr(agent), _execute("k", "pass")):
                pass
        assert refused.value.status == 401
        nursery.cancel_scope.cancel()


async def test_a_quiet_run_gets_keepalives(
    agent: ExecAgent, channels: ExecChannels, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(exec_channel, "KEEPALIVE_SECONDS", 0.2)
    kid = await agent.kernel()
    batches: list[list[dict[str, Any]]] = []
    async with _borrow(channels, _addr(agent), _execute(kid, "import time\ntime.sleep(1.5)")) as ch:
        with trio.fail_after(30):
            while not batches or batches[-1][-1:] == [] or batches[-1][-1]["op"] != "finished":
                batches.append(await ch.receive())
        ch.channel.reusable = True
    assert batches.count([]) >= 3
    assert batches[-1][-1]["exit_code"] == 0


async def test_an_agent_gone_silent_ends_the_run_with_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(exec_channels, "SILENCE_TIMEOUT", 0.5)

    async def black_hole(request: trio_websocket.WebSocketRequest) -> None:
        ws = await request.accept()
        await ws.get_message()  # the execute; never answered
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            trio_websocket.serve_websocket, black_hole, "127.0.0.1", 0, None
        )
        addr = f"127.0.0.1:{server.port}"
        pool = ExecChannels(nursery, Secret(SECRET))
        with pytest.raises(RPCError, match=r"nothing on the execute channel for 0\.5 s"):
            async with _borrow(pool, addr, _execute("k", "pass")) as channel:
                await channel.receive()
        nursery.cancel_scope.cancel()


async def test_a_runner_sending_garbage_ends_the_run_with_an_error(channels: ExecChannels) -> None:
    async with open_exec_agent("local") as agent:
        ipc = agent.scratch / "garbled" / "ipc"
        ipc.mkdir(parents=True)

        async def garbled(stream: trio.SocketStream) -> None:
            await stream.receive_some()  # the execute
            await stream.send_all(b"\x00\x00\x00\x05notjs")

        listener = trio.socket.socket(trio.socket.AF_UNIX)
        await listener.bind(str(ipc / "runner.sock"))
        listener.listen()
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, garbled, [trio.SocketListener(listener)])
            async with _borrow(channels, _addr(agent), _execute("garbled", "print(1)")) as channel:
                frames = await channel.to_end()
            nursery.cancel_scope.cancel()
    assert frames[-1]["op"] == "error"
    assert frames[-1]["status"] == 500
    assert "runner sent a bad frame" in frames[-1]["message"]
