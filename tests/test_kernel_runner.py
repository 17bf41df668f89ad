"""The kernel runner as a local subprocess: framing, ops, startup command, clean exit."""

from __future__ import annotations

import os
import platform
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

import backendai.kernel
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
