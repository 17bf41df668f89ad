"""Code execution through the agent's RPC API, on the local backend and on real Docker.

The agent keeps each run (its runner connection, a bounded console buffer), so
these drive it the way a stateless manager does: execute, then continue,
input, interrupt, with the ``flush`` protocol.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio

from tests.exec_agent import ExecAgent, open_exec_agent

LONG_LOOP = "import time\nfor i in range(600):\n    print(i)\n    time.sleep(0.05)"


@pytest.fixture(params=["local", "docker"])
def agent_kind(request: pytest.FixtureRequest) -> str:
    if request.param == "docker":
        request.getfixturevalue("kernel_image")
    return str(request.param)


@pytest.fixture
async def agent(agent_kind: str) -> AsyncIterator[ExecAgent]:
    async with open_exec_agent(agent_kind) as opened:
        yield opened


async def test_output_arrives_in_chunks_with_continued(agent: ExecAgent) -> None:
    kid = await agent.kernel()
    code = "import time\nprint('one', flush=True)\ntime.sleep(2.0)\nprint('two')"
    # 'one' arrives in a "continued" result while the run still sleeps; on a
    # loaded machine the run may take a few flush windows to print it.
    result = await agent.execute(kid, "query", code, run_id="r1", flush=0.5)
    early: list[list[str]] = []
    while result["status"] == "continued" and not early:
        assert result["exit_code"] is None
        early = result["console"]
        if not early:
            result = await agent.execute(kid, "continue", run_id="r1", flush=0.5)
    assert early == [["stdout", "one\n"]], result
    rest = await agent.execute(kid, "continue", run_id="r1", flush=5)
    while rest["status"] == "continued":
        assert rest["console"] == [], rest
        rest = await agent.execute(kid, "continue", run_id="r1", flush=5)
    assert (rest["status"], rest["exit_code"]) == ("finished", 0)
    assert rest["console"] == [["stdout", "two\n"]]
    # Once its final result was collected, the run is forgotten.
    gone = await agent.post(f"/v1/kernels/{kid}/execute", {"mode": "continue", "run_id": "r1"})
    assert gone.status_code == 404
    assert "no run 'r1' in kernel" in gone.json()["msg"]


async def test_state_input_and_password(agent: ExecAgent) -> None:
    kid = await agent.kernel()
    await agent.run(kid, "query", "greeting = 'hello'")
    code = "who = input('who? ')\nimport getpass\npw = getpass.getpass('pin: ')\nprint(greeting, who, pw[::-1])"
    results, out, _ = await agent.run(kid, "query", code, inputs=["ada", "1234"])
    asks = [r for r in results if r["status"] == "waiting-input"]
    assert [a["options"] for a in asks] == [{"is_password": False}, {"is_password": True}]
    assert out == "who? pin: hello ada 4321\n"
    assert results[-1]["exit_code"] == 0
    results, _, _ = await agent.run(kid, "query", "1")
    refused = await agent.post(
        f"/v1/kernels/{kid}/execute", {"mode": "input", "run_id": "nope", "code": "x"}
    )
    assert refused.status_code == 404


async def test_interrupt_then_the_session_still_works(agent: ExecAgent) -> None:
    kid = await agent.kernel()
    await agent.run(kid, "query", "kept = 41")
    first = await agent.execute(kid, "query", LONG_LOOP, run_id="loop", flush=0.3)
    assert first["status"] == "continued"
    resp = await agent.post(f"/v1/kernels/{kid}/interrupt")
    assert resp.json() == {"interrupted": True, "run_id": "loop"}
    rest = await agent.execute(kid, "continue", run_id="loop", flush=10)
    assert (rest["status"], rest["exit_code"]) == ("finished", 130)
    assert "KeyboardInterrupt" in "".join(d for k, d in rest["console"] if k == "stderr")
    _, out, _ = await agent.run(kid, "query", "print(kept + 1)")
    assert out == "42\n"
    resp = await agent.post(f"/v1/kernels/{kid}/interrupt")
    assert resp.json() == {"interrupted": False, "run_id": None}


async def test_batch_reports_each_step(agent: ExecAgent) -> None:
    kid = await agent.kernel()
    upload = await agent.http.post(
        f"/v1/kernels/{kid}/files",
        params={"path": "main.py"},
        content=b"print('main ran')\nexit(4)",
    )
    assert upload.status_code == 201
    options = {
        "clean": "rm -f built.txt",
        "build": "echo built > built.txt; cat built.txt",
        "exec": "*",
    }
    results, out, _ = await agent.run(kid, "batch", options=options)
    assert [(r["status"], r["exit_code"]) for r in results if r["status"] != "continued"] == [
        ("clean-finished", 0),
        ("build-finished", 0),
        ("finished", 4),
    ]
    assert out == "built\nmain ran\n"


async def test_exec_timeout_stops_the_run(agent: ExecAgent) -> None:
    kid = await agent.kernel()
    results, _, err = await agent.run(
        kid, "query", "import time\ntime.sleep(60)", options={"exec_timeout": 1}
    )
    assert results[-1]["status"] == "exec-timeout"
    assert "execution timed out after 1 s" in err
    results, out, _ = await agent.run(
        kid, "batch", options={"exec": "sleep 60", "exec_timeout": 0.5}
    )
    assert results[-1]["status"] == "exec-timeout"
    _, out, _ = await agent.run(kid, "query", "print('after')")
    assert out == "after\n"


async def test_completions(agent: ExecAgent) -> None:
    kid = await agent.kernel()
    await agent.run(kid, "query", "import json\nresult_value = 3")
    resp = await agent.post(f"/v1/kernels/{kid}/complete", {"code": "result_", "options": {}})
    assert resp.json() == {"result": ["result_value"]}
    resp = await agent.post(f"/v1/kernels/{kid}/complete", {"code": "json.du", "options": {}})
    assert resp.json() == {"result": ["json.dump", "json.dumps"]}


@pytest.mark.parametrize("agent_kind", ["local"], indirect=True)
async def test_bad_requests_get_problems_and_change_nothing(agent: ExecAgent) -> None:
    kid = await agent.kernel()
    url = f"/v1/kernels/{kid}/execute"
    cases = [
        (await agent.http.post(url, content=b"{not json"), 400, "body is not JSON"),
        (await agent.post(url, {"mode": "fly", "run_id": "r"}), 400, "mode: invalid value 'fly'"),
        (await agent.post(url, [1, 2]), 400, "body must be a JSON object"),
        (await agent.post(url, {"mode": "continue", "run_id": "ghost"}), 404, "no run 'ghost'"),
        (
            await agent.post(url, {"mode": "batch", "run_id": "b", "options": {}}),
            400,
            "needs options.exec",
        ),
        (
            await agent.post(
                "/v1/kernels/no-such-kernel/execute", {"mode": "query", "run_id": "r"}
            ),
            404,
            "no-such-kernel",
        ),
        (
            await agent.post(f"/v1/kernels/{kid}/complete", {"code": 3}),
            400,
            "complete: expected code",
        ),
        (
            await agent.http.post(
                url, json={"mode": "query", "run_id": "r"}, headers={"Authorization": "Bearer x"}
            ),
            401,
            "cluster secret",
        ),
    ]
    for resp, status, message in cases:
        assert resp.status_code == status, resp.text
        assert resp.headers["content-type"] == "application/problem+json"
        assert message in resp.json()["msg"]
    first = await agent.execute(kid, "query", LONG_LOOP, run_id="dup", flush=0.1)
    assert first["status"] == "continued"
    again = await agent.post(url, {"mode": "query", "run_id": "dup", "code": "1"})
    assert again.status_code == 409
    assert "run 'dup' already exists" in again.json()["msg"]
    other = await agent.post(url, {"mode": "query", "run_id": "other", "code": "1"})
    assert other.status_code == 409
    assert "run 'dup' is in progress" in other.json()["msg"]
    not_waiting = await agent.post(url, {"mode": "input", "run_id": "dup", "code": "x"})
    assert not_waiting.status_code == 409
    await agent.post(f"/v1/kernels/{kid}/interrupt")
    await agent.execute(kid, "continue", run_id="dup", flush=10)
    _, out, _ = await agent.run(kid, "query", "print('fine')")
    assert out == "fine\n"


@pytest.mark.parametrize("agent_kind", ["local"], indirect=True)
async def test_a_run_nobody_continues_is_interrupted_and_forgotten(agent_kind: str) -> None:
    async with open_exec_agent(agent_kind, run_idle_timeout=0.5) as agent:
        kid = await agent.kernel()
        first = await agent.execute(kid, "query", LONG_LOOP, run_id="idle", flush=0.1)
        assert first["status"] == "continued"
        with trio.fail_after(20):
            while agent.service.runs:  # noqa: ASYNC110 (the sweeper runs on its own clock)
                await trio.sleep(0.1)
            # The runner saw its client go and interrupted the run: the kernel is free again.
            while True:
                resp = await agent.post(
                    f"/v1/kernels/{kid}/execute", {"mode": "query", "run_id": "next", "code": "i"}
                )
                if resp.status_code != 409:
                    break
                await trio.sleep(0.1)
        assert resp.status_code == 200
        assert resp.json()["status"] == "finished"
        value = int(resp.json()["console"][0][1])
        assert value < 500  # interrupted long before the loop's end
        gone = await agent.post(
            f"/v1/kernels/{kid}/execute", {"mode": "continue", "run_id": "idle"}
        )
        assert gone.status_code == 404
