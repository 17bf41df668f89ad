"""The kernel runner's execution modes, driven directly over its socket (a local process).

Query (state, streaming, input, interrupt, timeout, completions, rich output),
batch (steps and exit codes), a client that goes away, and terminals.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

import backendai.kernel
from backendai.agent.runner_client import RunnerConnection, connect_runner
from tests.conftest import wait_for_path

RUNNER = Path(backendai.kernel.__file__).parent / "runner.py"
TIMEOUT = 20.0


class Runner:
    def __init__(self, process: trio.Process, ipc: Path, work: Path) -> None:
        self.process, self.ipc, self.work = process, ipc, work

    async def connect(self) -> RunnerConnection:
        return await connect_runner(self.ipc, "k-test")

    async def request(self, message: dict[str, Any]) -> dict[str, Any]:
        conn = await self.connect()
        try:
            await conn.send(message)
            reply = await conn.receive()
            assert reply is not None
            return reply
        finally:
            await conn.aclose()

    async def start(self, mode: str, code: str = "", **options: Any) -> RunnerConnection:
        conn = await self.connect()
        run_id = uuid.uuid4().hex[:8]
        await conn.send(
            {"op": "execute", "run_id": run_id, "mode": mode, "code": code, "options": options}
        )
        return conn

    async def run(
        self, mode: str, code: str = "", *, inputs: tuple[str, ...] = (), **options: Any
    ) -> list[dict[str, Any]]:
        """Every frame of a run, answering input requests from *inputs*."""
        answers = list(inputs)
        conn = await self.start(mode, code, **options)
        frames = []
        try:
            with trio.fail_after(TIMEOUT):
                while True:
                    frame = await conn.receive()
                    assert frame is not None, f"runner hung up; frames so far: {frames}"
                    frames.append(frame)
                    if frame["op"] == "waiting-input":
                        await conn.send({"op": "input", "data": answers.pop(0)})
                    if frame["op"] in ("finished", "error"):
                        return frames
        finally:
            await conn.aclose()


def text(frames: list[dict[str, Any]], kind: str = "stdout") -> str:
    return "".join(d for f in frames if f["op"] == "console" for k, d in f["items"] if k == kind)


def finished(frames: list[dict[str, Any]]) -> tuple[str, int]:
    assert frames[-1]["op"] == "finished", frames[-1]
    return frames[-1]["status"], frames[-1]["exit_code"]


@pytest.fixture(name="runner")
async def runner_fixture(tmp_path: Path) -> AsyncIterator[Runner]:
    ipc, work = tmp_path / "ipc", tmp_path / "work"
    ipc.mkdir()
    work.mkdir()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "BACKENDAI_IPC_DIR": str(ipc),
        "BACKENDAI_WORK_DIR": str(work),
        "HOME": str(work),
    }
    process = await trio.lowlevel.open_process(
        [sys.executable, "-u", str(RUNNER)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with trio.fail_after(TIMEOUT):
            await wait_for_path(ipc / "runner.sock")
        yield Runner(process, ipc, work)
    finally:
        process.terminate()
        with trio.move_on_after(TIMEOUT, shield=True):
            await process.wait()


# -- query mode ------------------------------------------------------------------


async def test_query_keeps_state_and_shows_the_last_value(runner: Runner) -> None:
    assert finished(await runner.run("query", "x = 20\ny = x + 1")) == ("finished", 0)
    frames = await runner.run("query", "print('x is', x)\ny * 2")
    assert text(frames) == "x is 20\n42\n"
    assert finished(frames) == ("finished", 0)


async def test_query_exceptions_and_exit_codes(runner: Runner) -> None:
    frames = await runner.run("query", "def f():\n    raise ValueError('boom')\nf()")
    assert finished(frames) == ("finished", 1)
    err = text(frames, "stderr")
    assert 'File "<cell 1>", line 3, in <module>' in err
    assert "ValueError: boom" in err
    assert "qchild" not in err  # the runner's own frames are not shown
    assert finished(await runner.run("query", "import sys; sys.exit(3)")) == ("finished", 3)
    frames = await runner.run("query", "print(")
    assert finished(frames) == ("finished", 1)
    assert "SyntaxError" in text(frames, "stderr")
    assert text(await runner.run("query", "print('alive')")) == "alive\n"


async def test_query_streams_output_as_it_is_written(runner: Runner) -> None:
    conn = await runner.start("query", "import time\nprint('one')\ntime.sleep(0.6)\nprint('two')")
    arrivals = []
    with trio.fail_after(TIMEOUT):
        while (frame := await conn.receive()) is not None and frame["op"] != "finished":
            arrivals.append((trio.current_time(), text([frame])))
    await conn.aclose()
    first = min(t for t, chunk in arrivals if "one" in chunk)
    second = min(t for t, chunk in arrivals if "two" in chunk)
    assert "".join(chunk for _, chunk in arrivals) == "one\ntwo\n"
    assert second - first >= 0.5


async def test_query_input_and_getpass_ask_the_client(runner: Runner) -> None:
    code = "name = input('name? ')\nimport getpass\npw = getpass.getpass()\nprint(name, len(pw))"
    frames = await runner.run("query", code, inputs=("ada", "secret"))
    asks = [f for f in frames if f["op"] == "waiting-input"]
    assert [(a["prompt"], a["is_password"]) for a in asks] == [
        ("name? ", False),
        ("Password: ", True),
    ]
    assert text(frames) == "name? Password: ada 6\n"
    assert finished(frames) == ("finished", 0)


async def test_interrupt_stops_the_cell_and_keeps_the_session(runner: Runner) -> None:
    await runner.run("query", "kept = 'yes'")
    conn = await runner.start("query", "import time\nprint('started')\ntime.sleep(30)")
    frames = []
    with trio.fail_after(TIMEOUT):
        while text(frames) != "started\n":
            frames.append(await conn.receive())
        busy = await runner.request({"op": "execute", "run_id": "r2", "mode": "query", "code": ""})
        assert busy["error"] == "busy"
        assert busy["run_id"] == frames[0]["run_id"]
        reply = await runner.request({"op": "interrupt"})
        assert reply == {"op": "interrupted", "run_id": frames[0]["run_id"]}
        while (frame := await conn.receive()) is not None:
            frames.append(frame)
    await conn.aclose()
    assert finished(frames) == ("finished", 130)
    assert "KeyboardInterrupt" in text(frames, "stderr")
    assert text(await runner.run("query", "print(kept)")) == "yes\n"
    assert (await runner.request({"op": "interrupt"}))["run_id"] is None


async def test_exec_timeout_interrupts_then_kills_and_restarts(runner: Runner) -> None:
    await runner.run("query", "state = 1")
    frames = await runner.run("query", "import time\ntime.sleep(30)", exec_timeout=0.5)
    assert finished(frames) == ("exec-timeout", 130)
    assert "execution timed out after 0.5 s" in text(frames, "stderr")
    assert text(await runner.run("query", "print(state)")) == "1\n"  # SIGINT sufficed: state kept
    stubborn = "import time\nwhile True:\n    try:\n        time.sleep(30)\n    except KeyboardInterrupt:\n        pass"
    frames = await runner.run("query", stubborn, exec_timeout=0.5)
    assert finished(frames) == ("exec-timeout", 137)
    assert "was killed by SIGKILL" in text(frames, "stderr")
    frames = await runner.run("query", "print('state' in dir())")
    assert text(frames) == "False\n"
    assert "a new Python interpreter started" in text(frames, "stderr")


async def test_completions_come_from_the_session(runner: Runner) -> None:
    await runner.run("query", "import os\nmy_variable = 1")
    reply = await runner.request({"op": "complete", "code": "my_v", "options": {}})
    assert reply == {"op": "completions", "items": ["my_variable"]}
    reply = await runner.request(
        {"op": "complete", "code": "", "options": {"line": "x = os.pat", "col": 10}}
    )
    assert "os.path" in reply["items"]
    reply = await runner.request(
        {"op": "complete", "code": "a\nos.get", "options": {"row": 1, "col": 6}}
    )
    assert "os.getcwd" in reply["items"]


async def test_rich_output_is_in_order_with_stdout(runner: Runner) -> None:
    code = (
        "from backendai_kernel import display, display_html, display_image, log\n"
        "print('before')\n"
        "display_image(b'PNGDATA')\n"
        "display_html('<b>hi</b>')\n"
        "log('noted')\n"
        "class Svg:\n    def _repr_svg_(self): return '<svg/>'\n"
        "display(Svg())\n"
        "print('after')"
    )
    frames = await runner.run("query", code)
    items = [item for f in frames if f["op"] == "console" for item in f["items"]]
    merged: list[list[Any]] = []
    for kind, data in items:
        if merged and kind == "stdout" == merged[-1][0]:
            merged[-1][1] += data
        else:
            merged.append([kind, data])
    assert merged == [
        ["stdout", "before\n"],
        ["media", ["image/png", base64.b64encode(b"PNGDATA").decode()]],
        ["html", "<b>hi</b>"],
        ["log", "noted"],
        ["media", ["image/svg+xml", "<svg/>"]],
        ["stdout", "after\n"],
    ]


async def test_files_written_to_output_are_reported(runner: Runner) -> None:
    code = "import os\nos.makedirs('.output/sub', exist_ok=True)\nopen('.output/sub/r.txt', 'w').write('abc')"
    frames = await runner.run("query", code)
    assert frames[-1]["files"] == [
        {"name": "sub/r.txt", "path": str(runner.work / ".output/sub/r.txt"), "size": 3}
    ]
    assert (await runner.run("query", "1"))[-1]["files"] == []  # unchanged: not reported again


async def test_a_client_that_goes_away_interrupts_its_run(runner: Runner) -> None:
    conn = await runner.start(
        "query", "import time\nfor i in range(300):\n    print(i)\n    time.sleep(0.1)"
    )
    with trio.fail_after(TIMEOUT):
        assert (await conn.receive())["op"] == "console"  # type: ignore[index]
    await conn.aclose()
    with trio.fail_after(TIMEOUT):
        while (await runner.request({"op": "status"}))["run_id"] is not None:  # noqa: ASYNC110
            await trio.sleep(0.05)
    frames = await runner.run("query", "print(i < 100)")
    assert text(frames) == "True\n"


async def test_a_detached_run_waiting_for_input_is_interrupted(runner: Runner) -> None:
    code = "try:\n    input()\nexcept BaseException as e:\n    outcome = type(e).__name__"
    conn = await runner.start("query", code)
    with trio.fail_after(TIMEOUT):
        assert (await conn.receive())["op"] == "waiting-input"  # type: ignore[index]
    await conn.aclose()
    with trio.fail_after(TIMEOUT):
        while (await runner.request({"op": "status"}))["run_id"] is not None:  # noqa: ASYNC110
            await trio.sleep(0.05)
    assert text(await runner.run("query", "print(outcome)")) == "KeyboardInterrupt\n"


# -- batch mode --------------------------------------------------------------------


async def test_batch_runs_clean_build_exec_with_exit_codes(runner: Runner) -> None:
    options = {
        "clean": "echo cleaning; exit 2",
        "build": "echo building",
        "exec": "echo running >&2; exit 5",
    }
    frames = await runner.run("batch", **options)
    steps = [(f["status"], f["exit_code"]) for f in frames if f["op"] == "step"]
    assert steps == [("clean-finished", 2), ("build-finished", 0)]
    assert text(frames) == "cleaning\nbuilding\n"
    assert text(frames, "stderr") == "running\n"
    assert finished(frames) == ("finished", 5)
    order = [f["op"] for f in frames]
    assert order.index("step") < order.index("finished")


async def test_batch_build_failure_skips_exec(runner: Runner) -> None:
    frames = await runner.run("batch", build="exit 3", exec="echo never")
    assert [(f["status"], f["exit_code"]) for f in frames if f["op"] == "step"] == [
        ("build-finished", 3)
    ]
    assert "never" not in text(frames)
    assert "build failed with exit code 3; exec skipped" in text(frames, "stderr")
    assert finished(frames) == ("finished", 3)


async def test_batch_default_exec_runs_main_py_and_streams(runner: Runner) -> None:
    (runner.work / "main.py").write_text(
        "import sys\nprint('from main', sys.argv)\nraise SystemExit(7)"
    )
    frames = await runner.run("batch", exec="*")
    assert text(frames) == "from main ['main.py']\n"
    assert finished(frames) == ("finished", 7)
    frames = await runner.run("batch", build="*", exec="*")
    assert "no default build command" in text(frames, "stderr")
    assert finished(frames) == ("finished", 7)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "batch mode needs options.exec"),
        ({"build": "make"}, "batch mode needs options.exec"),
        ({"exec": ["ls"]}, "options.exec: invalid value ['ls']"),
        ({"exec": "ls", "exec_timeout": "soon"}, "options.exec_timeout: invalid value 'soon'"),
    ],
)
async def test_bad_batch_options_are_refused(
    runner: Runner, options: dict[str, Any], message: str
) -> None:
    frames = await runner.run("batch", **options)
    assert frames[-1]["op"] == "error"
    assert frames[-1]["error"] == "bad-request"
    assert message in frames[-1]["message"]


async def test_batch_interrupt_reaches_the_process_group(runner: Runner) -> None:
    conn = await runner.start("batch", exec="echo go; sleep 30; echo never")
    with trio.fail_after(TIMEOUT):
        assert text([await conn.receive()]) == "go\n"  # type: ignore[list-item]
        await runner.request({"op": "interrupt"})
        frames = []
        while (frame := await conn.receive()) is not None:
            frames.append(frame)
    await conn.aclose()
    assert finished(frames) == ("finished", 130)


async def test_user_code_is_the_oom_killers_first_choice(runner: Runner) -> None:
    """The runner outlives a memory hog: everything it starts raised its OOM score."""
    adj = "open('/proc/self/oom_score_adj').read().strip()"
    assert text(await runner.run("query", f"print({adj})")) == "1000\n"
    assert text(await runner.run("batch", exec="cat /proc/self/oom_score_adj")) == "1000\n"
    status = await runner.request({"op": "status"})
    runner_adj = await trio.Path(f"/proc/{status['pid']}/oom_score_adj").read_text()
    assert runner_adj.strip() != "1000"


async def test_a_run_killed_at_shutdown_says_so(runner: Runner) -> None:
    conn = await runner.start("query", "import time\nprint('up')\ntime.sleep(60)")
    frames: list[dict[str, Any]] = []
    with trio.fail_after(TIMEOUT):
        while text(frames) != "up\n":
            frames.append(await conn.receive())  # type: ignore[arg-type]
        runner.process.terminate()
        while (frame := await conn.receive()) is not None:
            frames.append(frame)
        assert await runner.process.wait() == 0
    await conn.aclose()
    assert "[the kernel is stopping: run" in text(frames, "stderr")
    assert finished(frames) == ("finished", 137)
