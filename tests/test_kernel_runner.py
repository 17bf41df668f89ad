"""The kernel runner as a local subprocess: framing, ops, startup command, clean exit."""

from __future__ import annotations

import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
import trio

import backendai.kernel
from backendai.kernel.tunnel import Tunnels, relay
from backendai.kernel.wire import Connection
from tests.conftest import receive_frame, runner_request, send_frame, wait_for_path

RUNNER = Path(backendai.kernel.__file__).parent / "runner.py"
READY_TIMEOUT = 10.0


@dataclass
class RunningRunner:
    process: trio.Process
    socket: Path
    output: Path


@pytest.fixture
async def runner(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[RunningRunner]:
    startup = getattr(request, "param", None)
    ipc = tmp_path / "ipc"
    ipc.mkdir()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "BACKENDAI_IPC_DIR": str(ipc),
        "BACKENDAI_KERNEL_ID": "k-test",
        "BACKENDAI_SESSION_ID": "s-test",
    }
    if startup:
        env["BACKENDAI_STARTUP_COMMAND"] = startup
    output = tmp_path / "output.log"
    with output.open("wb") as out:
        process = await trio.lowlevel.open_process(
            [sys.executable, "-u", str(RUNNER)], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        with trio.fail_after(READY_TIMEOUT):
            await wait_for_path(ipc / "runner.sock")
        yield RunningRunner(process, ipc / "runner.sock", output)
    finally:
        if process.returncode is None:
            process.kill()
        with trio.move_on_after(READY_TIMEOUT, shield=True):
            await process.wait()


async def test_ping_answers_pong_with_pid_and_python(runner: RunningRunner) -> None:
    reply = await runner_request(runner.socket, {"op": "ping"})
    assert reply == {"op": "pong", "pid": runner.process.pid, "python": platform.python_version()}


async def test_status_names_the_kernel(runner: RunningRunner) -> None:
    reply = await runner_request(runner.socket, {"op": "status"})
    assert reply["op"] == "status"
    assert reply["kernel_id"] == "k-test"
    assert reply["session_id"] == "s-test"
    assert reply["uid"] == os.getuid()
    assert reply["startup_command"] is None


async def test_one_connection_serves_many_requests(runner: RunningRunner) -> None:
    stream = await trio.open_unix_socket(str(runner.socket))
    async with stream:
        for _ in range(3):
            await send_frame(stream, b'{"op": "ping"}')
            assert (await receive_frame(stream))["op"] == "pong"


async def test_unknown_op_is_an_error_naming_it(runner: RunningRunner) -> None:
    reply = await runner_request(runner.socket, {"op": "launch-missiles"})
    assert reply["op"] == "error"
    assert reply["error"] == "unknown-op"
    assert "'launch-missiles'" in reply["message"]
    assert "execute, interrupt" in reply["message"]
    assert "ping, pty" in reply["message"]


async def test_a_frame_that_is_not_json_is_refused(runner: RunningRunner) -> None:
    stream = await trio.open_unix_socket(str(runner.socket))
    async with stream:
        await send_frame(stream, b"\xffnot json")
        reply = await receive_frame(stream)
    assert reply["error"] == "bad-frame"
    # The runner survives a bad client.
    assert (await runner_request(runner.socket, {"op": "ping"}))["op"] == "pong"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_signal_exits_zero_and_removes_the_socket(
    runner: RunningRunner, signum: signal.Signals
) -> None:
    runner.process.send_signal(signum)
    with trio.fail_after(READY_TIMEOUT):
        assert await runner.process.wait() == 0
    assert not runner.socket.exists()
    assert list(runner.socket.parent.iterdir()) == []
    assert f"backendai kernel runner ready on {runner.socket}" in runner.output.read_text()


@pytest.mark.parametrize("runner", ["echo startup says hello; exit 3"], indirect=True)
async def test_startup_command_runs_once_with_runner_output(runner: RunningRunner) -> None:
    with trio.fail_after(READY_TIMEOUT):
        while True:
            status = await runner_request(runner.socket, {"op": "status"})
            if status["startup_command"]["exit_code"] is not None:
                break
            await trio.sleep(0.02)
    assert status["startup_command"]["exit_code"] == 3
    assert runner.output.read_text().count("startup says hello") == 1


async def test_a_stale_socket_file_is_replaced(tmp_path: Path) -> None:
    ipc = tmp_path / "ipc"
    ipc.mkdir()
    (ipc / "runner.sock").write_text("left over by a crashed runner")
    env = {"BACKENDAI_IPC_DIR": str(ipc)}
    process = await trio.lowlevel.open_process(
        [sys.executable, str(RUNNER)], env=env, stdout=subprocess.DEVNULL
    )
    try:
        with trio.fail_after(READY_TIMEOUT):
            while True:
                try:
                    reply = await runner_request(ipc / "runner.sock", {"op": "ping"})
                    break
                except OSError:
                    await trio.sleep(0.02)
        assert reply["pid"] == process.pid
    finally:
        process.terminate()
        with trio.move_on_after(READY_TIMEOUT, shield=True):
            await process.wait()


async def _connect_through(runner: RunningRunner, port: int) -> tuple[trio.SocketStream, bytes]:
    """A connection turned raw by the ``connect`` op, and the bytes after its reply."""
    stream = await trio.open_unix_socket(str(runner.socket))
    await send_frame(stream, json.dumps({"op": "connect", "port": port}).encode())
    buf = b""
    while len(buf) < 4 or len(buf) < 4 + int.from_bytes(buf[:4], "big"):
        chunk = await stream.receive_some()
        assert chunk, "the runner closed the connection before its reply"
        buf += chunk
    end = 4 + int.from_bytes(buf[:4], "big")
    assert json.loads(buf[4:end]) == {"op": "connected", "port": port}
    return stream, buf[end:]


async def test_connect_carries_an_app_connection_with_half_closes(runner: RunningRunner) -> None:
    async def app(stream: trio.SocketStream) -> None:
        await stream.send_all(b"banner\n")  # the app speaks first, as SSH does
        total = 0
        while data := await stream.receive_some():
            total += len(data)
        await stream.send_all(f"got {total}\n".encode())  # after the client's half-close

    async with trio.open_nursery() as nursery:
        [listener] = await nursery.start(partial(trio.serve_tcp, app, 0, host="127.0.0.1"))
        port = listener.socket.getsockname()[1]
        stream, received = await _connect_through(runner, port)
        payload = os.urandom(3 * 1024 * 1024)
        with trio.fail_after(30):
            await stream.send_all(payload)
            await stream.send_eof()
            while chunk := await stream.receive_some():
                received += chunk
        await stream.aclose()
        nursery.cancel_scope.cancel()
    assert received == f"banner\ngot {len(payload)}\n".encode()


async def test_connect_to_a_bad_or_closed_port_is_refused(runner: RunningRunner) -> None:
    bad = await runner_request(runner.socket, {"op": "connect", "port": 0})
    assert (bad["op"], bad["error"]) == ("error", "bad-request")
    assert "invalid port 0" in bad["message"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    refused = await runner_request(runner.socket, {"op": "connect", "port": closed_port})
    assert (refused["op"], refused["error"]) == ("error", "unavailable")
    assert f"nothing accepts connections on port {closed_port}" in refused["message"]


def test_tunnels_beyond_the_limit_are_refused() -> None:
    a, b = socket.socketpair()
    with a, b:
        refused = Tunnels(limit=0).op_connect(Connection(a), {"op": "connect", "port": 80})
    assert refused is not None
    assert refused["error"] == "unavailable"
    assert "the most the kernel runner carries at once" in refused["message"]


def test_a_half_closed_tunnel_idle_too_long_is_closed() -> None:
    left, inner = socket.socketpair()
    app, app_peer = socket.socketpair()
    with left, inner, app, app_peer:
        left.shutdown(socket.SHUT_WR)  # the agent's side is done sending; the app never ends
        started = time.monotonic()
        relay(inner, app, idle_limit=0.3)
        assert 0.2 < time.monotonic() - started < 5
        assert app_peer.recv(10) == b""  # the app saw the end
