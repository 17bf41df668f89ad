"""Code execution through the manager's API on real Docker: REST, websockets, files, CLI."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest
import trio
import trio_websocket

from backendai.client.api import APIClient, APIResponseError
from backendai.client.exec_client import (
    download,
    list_files,
    open_exec_stream,
    open_pty,
    stream_execute,
    upload,
)

from .cluster import Cluster, cluster_config, open_cluster

pytestmark = [pytest.mark.docker, pytest.mark.slow]

IMAGE = "backendai/python:3.11"


@pytest.fixture
async def cluster(tmp_path: Path, kernel_image: str):  # type: ignore[no-untyped-def]
    config = cluster_config(
        tmp_path / "data",
        agent={"backend": "docker"},
        manager={"max_upload_bytes": 1024 * 1024},
    )
    async with open_cluster(config) as c:
        await c.api.create_session(IMAGE, "exec-test", max_wait=60)
        yield c


async def _rest(api: APIClient, body: dict[str, Any]) -> dict[str, Any]:
    r = await api.request("POST", "/session/exec-test", json=body)
    result: dict[str, Any] = r.json()["result"]
    return result


def _stdout(result: dict[str, Any]) -> str:
    return "".join(d for k, d in result["console"] if k == "stdout")


async def _no_input(_: dict[str, Any]) -> str:
    raise AssertionError("no input was expected")


async def test_rest_continued_protocol_and_state(cluster: Cluster) -> None:
    first = await _rest(
        cluster.api,
        {
            "mode": "query",
            "code": "x = 21\nprint('one', flush=True)\nimport time; time.sleep(3)\nprint(x * 2)",
        },
    )
    assert first["status"] == "continued", first
    assert _stdout(first) == "one\n"
    out = _stdout(first)
    result = first
    with trio.fail_after(20):
        while result["status"] == "continued":
            result = await _rest(
                cluster.api, {"mode": "continue", "runId": first["runId"], "code": ""}
            )
            out += _stdout(result)
    assert result["status"] == "finished"
    assert out == "one\n42\n"
    again = await _rest(cluster.api, {"mode": "query", "code": "print(x + 1)"})
    assert _stdout(again) == "22\n"


async def test_websocket_input_and_password(cluster: Cluster) -> None:
    prompts: list[dict[str, Any]] = []
    seen: list[str] = []

    async def answer(result: dict[str, Any]) -> str:
        prompts.append(result)
        return "s3cret" if result["options"].get("is_password") else "bob"

    final = await stream_execute(
        cluster.api,
        "exec-test",
        mode="query",
        code="import getpass\nname = input('who? ')\npw = getpass.getpass()\nprint('hi', name, len(pw))",
        on_result=lambda r: seen.append(_stdout(r)),
        ask_input=answer,
    )
    assert final["status"] == "finished"
    assert [bool(p["options"].get("is_password")) for p in prompts] == [False, True]
    assert "hi bob 6" in "".join(seen)


async def test_interrupt_keeps_the_session(cluster: Cluster) -> None:
    results: list[dict[str, Any]] = []

    async def run() -> None:
        results.append(
            await stream_execute(
                cluster.api,
                "exec-test",
                mode="query",
                code="import time\ntime.sleep(60)",
                on_result=lambda r: None,
                ask_input=_no_input,
            )
        )

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run)
            await trio.sleep(1.5)  # let the run start sleeping inside the kernel
            await cluster.api.request("POST", "/session/exec-test/interrupt")
    assert results[0]["status"] == "finished"
    after = await _rest(cluster.api, {"mode": "query", "code": "print('alive')"})
    assert _stdout(after) == "alive\n"


async def test_batch_streams_and_reports_exit_code(cluster: Cluster, tmp_path: Path) -> None:
    src = tmp_path / "job"
    src.mkdir()
    (src / "main.py").write_text("print('working')\nraise SystemExit(7)\n")
    await upload(cluster.api, "exec-test", [src / "main.py"], src)
    chunks: list[str] = []
    final = await stream_execute(
        cluster.api,
        "exec-test",
        mode="batch",
        options={"exec": "python3 main.py"},
        on_result=lambda r: chunks.append(_stdout(r)),
        ask_input=_no_input,
    )
    assert final["status"] == "finished"
    assert final["exitCode"] == 7
    assert "working" in "".join(chunks)


async def test_files_roundtrip_and_bad_uploads(cluster: Cluster, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "a.txt").write_text("alpha\n")
    assert await upload(cluster.api, "exec-test", [src / "sub" / "a.txt"], src) == ["sub/a.txt"]
    names = {e["filename"] for e in await list_files(cluster.api, "exec-test", "sub")}
    assert names == {"a.txt"}
    got = await download(cluster.api, "exec-test", "sub", tmp_path / "out")
    assert "sub/a.txt" in got
    assert (tmp_path / "out" / "sub" / "a.txt").read_text() == "alpha\n"

    with pytest.raises(APIResponseError) as e:
        await cluster.api.send_raw(
            "POST",
            "/session/exec-test/upload",
            files=[("files", ("../escape.txt", b"x", "text/plain"))],
        )
    assert e.value.status == 400
    assert "../escape.txt" in e.value.msg
    still = await _rest(cluster.api, {"mode": "query", "code": "print('ok')"})
    assert _stdout(still) == "ok\n"


async def test_an_oversize_upload_is_refused_promptly(cluster: Cluster, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(20 * 1024 * 1024))
    with trio.fail_after(60), pytest.raises(APIResponseError) as e:
        await upload(cluster.api, "exec-test", [big], tmp_path)
    assert e.value.status == 413
    assert "1048576" in e.value.msg
    names = {f["filename"] for f in await list_files(cluster.api, "exec-test", ".")}
    assert "big.bin" not in names
    still = await _rest(cluster.api, {"mode": "query", "code": "print('ok')"})
    assert _stdout(still) == "ok\n"


async def test_megabytes_of_output_stream_through_the_websocket(cluster: Cluster) -> None:
    code = "import sys\nfor i in range(6000):\n    sys.stdout.write(str(i % 10) * 1023 + '\\n')"
    received: list[str] = []

    def keep(r: dict[str, Any]) -> None:
        received.extend(d for k, d in r.get("console", []) if k == "stdout")

    with trio.fail_after(120):
        final = await stream_execute(
            cluster.api,
            "exec-test",
            mode="query",
            code=code,
            on_result=keep,
            ask_input=_no_input,
        )
    assert (final["status"], final["exitCode"]) == ("finished", 0)
    out = "".join(received)
    assert len(out) == 6000 * 1024
    assert out == "".join(str(i % 10) * 1023 + "\n" for i in range(6000))


async def test_garbage_on_the_execute_websocket(cluster: Cluster) -> None:
    path = "/stream/session/exec-test/execute"
    async with trio_websocket.open_websocket_url(
        cluster.api.websocket_base + path, extra_headers=cluster.api.signed_headers("GET", path)
    ) as ws:
        await ws.send_message("{this is not json")
        reply = json.loads(await ws.get_message())
    assert reply["status"] == "error"
    assert "JSON" in reply["msg"]
    after = await _rest(cluster.api, {"mode": "query", "code": "print('fine')"})
    assert _stdout(after) == "fine\n"


async def test_one_websocket_takes_run_after_run(cluster: Cluster) -> None:
    seen: list[str] = []

    async def answer(_: dict[str, Any]) -> str:
        return "ada"

    async with open_exec_stream(cluster.api, "exec-test") as stream:
        first = await stream.run(
            mode="query", code="a = 41", on_result=lambda r: None, ask_input=_no_input
        )
        second = await stream.run(
            mode="query",
            code="name = input()\nprint(a + 1, name)",
            on_result=lambda r: seen.append(_stdout(r)),
            ask_input=answer,
        )
        # A bad run is refused on the socket, which then takes the next one.
        await stream.ws.send_message(json.dumps({"mode": "continue"}))
        refused = json.loads(await stream.ws.get_message())
        third = await stream.run(
            mode="batch",
            options={"exec": "exit 4"},
            on_result=lambda r: None,
            ask_input=_no_input,
        )
    assert (first["status"], first["exitCode"]) == ("finished", 0)
    assert (second["status"], "".join(seen)) == ("finished", "42 ada\n")
    assert refused["status"] == "error"
    assert "'continue'" in refused["msg"]
    assert (third["status"], third["exitCode"]) == ("finished", 4)


async def test_a_run_ended_while_waiting_for_input_leaves_nothing_behind(
    cluster: Cluster,
) -> None:
    async with open_exec_stream(cluster.api, "exec-test") as stream:
        ws = stream.ws
        await ws.send_message(json.dumps({"mode": "query", "code": "name = input('who? ')"}))
        with trio.fail_after(30):
            while json.loads(await ws.get_message())["status"] != "waiting-input":
                pass
        # The run ends while the user types: the client hears of it without answering.
        await cluster.api.request("POST", "/session/exec-test/interrupt")
        stderr = ""
        with trio.fail_after(30):
            while True:
                result = json.loads(await ws.get_message())
                stderr += "".join(d for k, d in result["console"] if k == "stderr")
                if result["status"] == "finished":
                    break
        assert "KeyboardInterrupt" in stderr
        await ws.send_message("too late")  # the answer, after all: dropped
        seen: list[str] = []
        after = await stream.run(
            mode="query",
            code="print('next')",
            on_result=lambda r: seen.append(_stdout(r)),
            ask_input=_no_input,
        )
    assert (after["status"], "".join(seen)) == ("finished", "next\n")
    # The agent channel that run used is in step for the next borrower.
    seen.clear()
    await stream_execute(
        cluster.api,
        "exec-test",
        mode="query",
        code="print('clean')",
        on_result=lambda r: seen.append(_stdout(r)),
        ask_input=_no_input,
    )
    assert "".join(seen) == "clean\n"


async def test_a_client_leaving_mid_run_has_it_interrupted(cluster: Cluster) -> None:
    loop = "import time\nwhile True:\n    print('tick', flush=True)\n    time.sleep(0.05)"
    async with open_exec_stream(cluster.api, "exec-test") as stream:
        await stream.ws.send_message(json.dumps({"mode": "query", "code": loop}))
        with trio.fail_after(30):
            while "tick" not in _stdout(json.loads(await stream.ws.get_message())):
                pass
    # The socket closed mid-run: the manager closes its agent channel, the runner stops
    # the run, and the kernel takes the next one.
    with trio.fail_after(30):
        while True:
            try:
                after = await _rest(cluster.api, {"mode": "query", "code": "print('after')"})
                break
            except APIResponseError as e:
                if e.status != 409:  # 409: the interrupted run is still ending
                    raise
                await trio.sleep(0.1)
    assert _stdout(after) == "after\n"


async def test_a_flood_to_a_slow_websocket_client_keeps_memory_bounded(cluster: Cluster) -> None:
    """200 MB printed to a client that stops reading for a while: the run waits (backpressure
    from the client's socket through the manager, the agent channel and the runner), and this
    process, which holds the manager, the agent and the client, stays within bounds."""
    mib = 1024 * 1024
    flood = "import sys\nline = 'x' * 1023 + '\\n'\nfor _ in range(200 * 1024):\n    sys.stdout.write(line)"
    me = psutil.Process()
    base = peak = me.memory_info().rss
    received = 0
    async with open_exec_stream(cluster.api, "exec-test") as stream:
        await stream.ws.send_message(json.dumps({"mode": "query", "code": flood}))
        first = json.loads(await stream.ws.get_message())
        received += len(_stdout(first))
        for _ in range(30):  # not reading for 1.5 s
            await trio.sleep(0.05)
            peak = max(peak, me.memory_info().rss)
        with trio.fail_after(120):
            while True:
                result = json.loads(await stream.ws.get_message())
                received += len(_stdout(result))
                peak = max(peak, me.memory_info().rss)
                if result["status"] == "finished":
                    break
    assert received == 200 * mib
    assert (peak - base) / mib < 64, f"grew {(peak - base) / mib:.0f} MiB"


async def test_terminal(cluster: Cluster) -> None:
    out = b""
    async with open_pty(cluster.api, "exec-test") as ws:
        await ws.send_message(json.dumps({"type": "resize", "rows": 33, "cols": 111}))
        cmd = b"stty size; echo marker-$((6*7))\n"
        await ws.send_message(
            json.dumps({"type": "stdin", "chars": base64.b64encode(cmd).decode()})
        )
        with trio.fail_after(20):
            while b"marker-42" not in out:
                msg = json.loads(await ws.get_message())
                if msg.get("type") == "out":
                    out += base64.b64decode(msg["data"])
    assert b"33 111" in out


async def test_restart_gives_fresh_interpreter_same_files(cluster: Cluster) -> None:
    await _rest(
        cluster.api, {"mode": "query", "code": "y = 5\nopen('kept.txt', 'w').write('kept')"}
    )
    await cluster.api.request("PATCH", "/session/exec-test")
    r = await _rest(
        cluster.api, {"mode": "query", "code": "print('y' in dir(), open('kept.txt').read())"}
    )
    assert _stdout(r) == "False kept\n"


async def test_cli_run_exits_with_the_code_exit_code(cluster: Cluster, tmp_path: Path) -> None:
    creds = cluster.info.manager.credentials
    env = {
        **os.environ,
        "BACKEND_ENDPOINT": cluster.endpoint,
        "BACKEND_ACCESS_KEY": creds.access_key,
        "BACKEND_SECRET_KEY": creds.secret_key,
    }

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "backendai.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
        )

    r = await trio.to_thread.run_sync(cli, "run", IMAGE, "--name", "cli-run", "-c", "print(1+1)")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "2\n"
    (tmp_path / "main.py").write_text("import sys\nprint('from file')\nsys.exit(5)\n")
    r = await trio.to_thread.run_sync(
        cli, "run", IMAGE, "main.py", "--name", "cli-run", "--exec", "python3 main.py", "--rm"
    )
    assert r.returncode == 5, r.stderr
    assert "from file" in r.stdout
