"""Session start: create-to-RUNNING through backendai, beside raw docker-py create+start.

    .venv/bin/python bench/session_start.py [--rounds N] [--concurrency 1,10]

Ours: ``POST /session`` on an all-in-one cluster (real manager, agent, Docker
backend, SQLite) until the answer says RUNNING.  The peer: docker-py
``create_container`` + ``start`` of the same image, command, mounts and limits,
straight to the engine.  Both run in the same process, alternating, on the
same machine; the table gives median and p99 per scenario and the ratio of
medians (ours / peer).  Containers use network mode ``none``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import docker
import trio

from backendai.agent.backend import IPC_MOUNT, RUNNER_MOUNT
from backendai.agent.docker import RUNNER_DIR
from backendai.client.api import APIClient
from backendai.config import load_config
from backendai.roles.allinone import serve as serve_all

IMAGE = "backendai/python:3.11"


def percentile(samples: list[float], p: float) -> float:
    s = sorted(samples)
    k = min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))
    return s[k]


def raw_docker_start(client: docker.APIClient, scratch: Path) -> tuple[float, str]:
    """The peer: create+start the same container directly; returns (seconds, id)."""
    ipc = scratch / uuid.uuid4().hex
    ipc.mkdir(parents=True)
    t0 = time.perf_counter()
    host_config = client.create_host_config(
        binds={
            str(RUNNER_DIR): {"bind": RUNNER_MOUNT, "mode": "ro"},
            str(ipc): {"bind": IPC_MOUNT, "mode": "rw"},
        },
        network_mode="none",
        nano_cpus=250_000_000,
        mem_limit=256 * 1024 * 1024,
        pids_limit=4096,
    )
    c = client.create_container(
        IMAGE,
        command=["python3", f"{RUNNER_MOUNT}/runner.py"],
        environment={"BACKENDAI_IPC_DIR": IPC_MOUNT},
        host_config=host_config,
        labels={"bench": "session_start"},
    )
    client.start(c["Id"])
    return time.perf_counter() - t0, c["Id"]


async def measure_ours(api: APIClient, n: int) -> list[float]:
    samples: list[float] = []
    names = [f"bench-{uuid.uuid4().hex[:8]}" for _ in range(n)]

    async def one(name: str) -> None:
        t0 = time.perf_counter()
        r = await api.create_session(
            IMAGE, name, resources={"cpu": "0.25", "mem": "256m"}, max_wait=120
        )
        took = time.perf_counter() - t0
        if r["status"] != "RUNNING":
            raise RuntimeError(f"session {name} ended {r['status']}, not RUNNING")
        samples.append(took)

    async with trio.open_nursery() as nursery:
        for name in names:
            nursery.start_soon(one, name)
    async with trio.open_nursery() as nursery:
        for name in names:
            nursery.start_soon(api.destroy_session, name)
    # Let terminations finish before the next round is timed.
    with trio.fail_after(120):
        while True:
            sessions = await api.list_sessions()
            if all(s["status"] in ("TERMINATED", "CANCELLED", "ERROR") for s in sessions):
                break
            await trio.sleep(0.1)
    return samples


async def measure_peer(client: docker.APIClient, scratch: Path, n: int) -> list[float]:
    results: list[tuple[float, str]] = []
    limiter = trio.CapacityLimiter(n)

    async def one() -> None:
        results.append(
            await trio.to_thread.run_sync(raw_docker_start, client, scratch, limiter=limiter)
        )

    async with trio.open_nursery() as nursery:
        for _ in range(n):
            nursery.start_soon(one)
    for _, cid in results:
        await trio.to_thread.run_sync(lambda c=cid: client.remove_container(c, force=True))
    return [t for t, _ in results]


async def main(rounds: int, levels: list[int]) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-session-start-") as tmp:
        config = load_config(
            None,
            env={},
            overrides={
                "cluster": {"data_dir": tmp, "secret": "bench"},
                "manager": {"port": 0, "reconcile_interval": 1.0},
                "agent": {
                    "port": 0,
                    "backend": "docker",
                    "network_mode": "none",
                    "cpu": 16.0,
                    "mem": "16g",
                },
                "storage": {"port": 0},
                "appproxy": {"port": 0},
            },
        )
        client = docker.APIClient()
        rows = []
        async with trio.open_nursery() as nursery:
            info = await nursery.start(serve_all, config)
            creds = info.manager.credentials
            async with APIClient(info.manager.endpoint, creds.access_key, creds.secret_key) as api:
                if not await trio.to_thread.run_sync(lambda: client.images(name=IMAGE)):
                    raise SystemExit(f"image {IMAGE} is missing: run backendai image build python")
                await measure_ours(api, 1)  # warm-up: first heartbeat applied, caches warm
                await measure_peer(client, Path(tmp), 1)
                for n in levels:
                    ours: list[float] = []
                    peer: list[float] = []
                    for _ in range(rounds if n == 1 else max(2, rounds // 5)):
                        peer += await measure_peer(client, Path(tmp), n)
                        ours += await measure_ours(api, n)
                    rows.append((n, ours, peer))
            nursery.cancel_scope.cancel()
        client.close()

    print(f"\nsession start, create -> RUNNING ({IMAGE}, network none), seconds")
    header = f"{'concurrent':>10} {'samples':>8} {'ours p50':>9} {'ours p99':>9} {'docker p50':>11} {'docker p99':>11} {'ratio p50':>10} {'ratio p99':>10}"
    print(header)
    print("-" * len(header))
    for n, ours, peer in rows:
        o50, o99 = statistics.median(ours), percentile(ours, 99)
        p50, p99 = statistics.median(peer), percentile(peer, 99)
        print(
            f"{n:>10} {len(ours):>8} {o50:>9.3f} {o99:>9.3f} {p50:>11.3f} {p99:>11.3f} {o50 / p50:>10.2f} {o99 / p99:>10.2f}"
        )
    print(
        "\nours: POST /session until it answers RUNNING (API, scheduling, agent RPC, container start);"
    )
    print(
        "docker: docker-py create_container + start of the same image, command, mounts and limits."
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--rounds", type=int, default=20, help="rounds for the single-session scenario"
    )
    parser.add_argument("--concurrency", default="1,10", help="comma-separated concurrency levels")
    args = parser.parse_args()
    trio.run(main, args.rounds, [int(x) for x in args.concurrency.split(",")])
