"""Code execution: round trip of ``print(1)`` on a warm session, beside Jupyter; and output throughput.

    .venv/bin/python bench/exec_latency.py [--runs N] [--mb 100]

Ours: an all-in-one cluster (manager, agent, Docker backend) in this process,
measured three ways: runs on one open execute websocket
``/stream/session/{id}/execute`` (send the code, read until ``finished``, send the
next; what a notebook front end does, and the like of jupyter_client's open
channels); a websocket opened per run (what ``backend.ai run`` does: handshake,
signature check and session lookup each time); the REST execute call
(``POST /session/{id}``) on a kept-alive connection.  The peer: ipykernel driven
by jupyter_client (``execute_interactive`` on a warm kernel), on the same machine,
in the same run, alternating.  Then the throughput of streaming ``--mb`` MB of
stdout through our websocket API, in MB/s.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import trio
from jupyter_client.manager import start_new_kernel

from backendai.client.api import APIClient
from backendai.client.exec_client import ExecStream, open_exec_stream, stream_execute
from backendai.config import load_config
from backendai.roles.allinone import serve as serve_all

IMAGE = "backendai/python:3.11"


def percentile(samples: list[float], p: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))]


async def _no_input(_: dict[str, object]) -> str:
    raise RuntimeError("the benchmark code asks for no input")


async def ours_ws(api: APIClient, session: str) -> float:
    t0 = time.perf_counter()
    final = await stream_execute(
        api, session, mode="query", code="print(1)", on_result=lambda r: None, ask_input=_no_input
    )
    took = time.perf_counter() - t0
    assert final["status"] == "finished", final
    return took


async def ours_open_ws(stream: ExecStream) -> float:
    t0 = time.perf_counter()
    final = await stream.run(
        mode="query", code="print(1)", on_result=lambda r: None, ask_input=_no_input
    )
    took = time.perf_counter() - t0
    assert final["status"] == "finished", final
    return took


async def ours_rest(api: APIClient, session: str) -> float:
    t0 = time.perf_counter()
    r = await api.request("POST", f"/session/{session}", json={"mode": "query", "code": "print(1)"})
    took = time.perf_counter() - t0
    assert r.json()["result"]["status"] == "finished", r.text
    return took


def jupyter_once(kc: object) -> float:
    outputs: list[str] = []
    t0 = time.perf_counter()
    kc.execute_interactive(  # type: ignore[attr-defined]
        "print(1)",
        output_hook=lambda msg: outputs.append(msg["content"].get("text", "")),
        timeout=30,
    )
    took = time.perf_counter() - t0
    assert "1\n" in "".join(outputs), outputs
    return took


async def throughput(api: APIClient, session: str, mb: int) -> tuple[float, int]:
    code = (
        "import sys\nchunk = 'x' * 1023 + '\\n'\n"
        f"for _ in range({mb} * 1024):\n    sys.stdout.write(chunk)\n"
    )
    received = 0

    def count(r: dict[str, object]) -> None:
        nonlocal received
        for kind, data in r.get("console", []):  # type: ignore[attr-defined]
            if kind == "stdout":
                received += len(data)

    t0 = time.perf_counter()
    await stream_execute(
        api, session, mode="query", code=code, on_result=count, ask_input=_no_input
    )
    return time.perf_counter() - t0, received


async def main(runs: int, mb: int) -> None:
    km, kc = start_new_kernel(kernel_name="python3")
    try:
        with tempfile.TemporaryDirectory(prefix="bench-exec-") as tmp:
            config = load_config(
                None,
                env={},
                overrides={
                    "cluster": {"data_dir": tmp, "secret": "bench"},
                    "manager": {"port": 0},
                    "agent": {"port": 0, "backend": "docker", "network_mode": "none"},
                    "storage": {"port": 0},
                    "appproxy": {"port": 0},
                },
            )
            async with trio.open_nursery() as nursery:
                info = await nursery.start(serve_all, config)
                creds = info.manager.credentials
                async with APIClient(
                    info.manager.endpoint, creds.access_key, creds.secret_key
                ) as api:
                    with trio.fail_after(60):
                        while True:
                            try:
                                await api.create_session(IMAGE, "bench-exec", max_wait=60)
                                break
                            except Exception as e:  # the agent's first heartbeat may not be in yet
                                print(f"waiting for the cluster: {e}", flush=True)
                                await trio.sleep(0.5)
                    open_ws, ws, rest, jup = [], [], [], []
                    async with open_exec_stream(api, "bench-exec") as stream:
                        for _ in range(5):  # warm them all
                            await ours_open_ws(stream)
                            await ours_ws(api, "bench-exec")
                            await ours_rest(api, "bench-exec")
                            await trio.to_thread.run_sync(jupyter_once, kc)
                        for _ in range(runs):
                            jup.append(await trio.to_thread.run_sync(jupyter_once, kc))
                            open_ws.append(await ours_open_ws(stream))
                            ws.append(await ours_ws(api, "bench-exec"))
                            rest.append(await ours_rest(api, "bench-exec"))
                    seconds, received = await throughput(api, "bench-exec", mb)
                    await api.destroy_session("bench-exec")
                    ended = ("TERMINATED", "CANCELLED", "ERROR")
                    with trio.fail_after(60):  # its container goes before the cluster stops
                        while (await api.get_session("bench-exec"))["status"] not in ended:  # noqa: ASYNC110
                            await trio.sleep(0.1)  # polling the manager
                nursery.cancel_scope.cancel()
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)

    j50, j99 = statistics.median(jup), percentile(jup, 99)
    print(f"\nprint(1) round trip on a warm session, {runs} runs each, milliseconds")
    print(f"{'path':<40} {'p50':>8} {'p99':>8} {'ratio p50':>10} {'ratio p99':>10}")
    print("-" * 80)
    paths = (
        ("ours: websocket, one socket, many runs", open_ws),
        ("ours: websocket per run (backend.ai run)", ws),
        ("ours: REST execute (keep-alive)", rest),
    )
    for name, xs in paths:
        o50, o99 = statistics.median(xs), percentile(xs, 99)
        print(
            f"{name:<40} {o50 * 1e3:>8.2f} {o99 * 1e3:>8.2f} {o50 / j50:>10.2f} {o99 / j99:>10.2f}"
        )
    print(
        f"{'jupyter: ipykernel + jupyter_client':<40} {j50 * 1e3:>8.2f} {j99 * 1e3:>8.2f} {1:>10.2f} {1:>10.2f}"
    )
    print(
        f"\nstdout streaming: {received / 1e6:.1f} MB in {seconds:.2f} s = {received / 1e6 / seconds:.1f} MB/s"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--mb", type=int, default=100)
    args = parser.parse_args()
    trio.run(main, args.runs, args.mb)
