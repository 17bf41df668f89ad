"""The scheduling loop in a manager context: a long pass never blocks the API."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import sqlalchemy as sa
import trio

from backendai.bus import MemoryEventBus
from backendai.config import Secret, load_config
from backendai.db import open_database
from backendai.db.tables import keypairs, sessions
from backendai.manager.agent_client import open_agent_client
from backendai.manager.context import ManagerContext
from backendai.manager.scheduling import serve_scheduler
from backendai.manager.storage_client import open_storage_client

from .sched_db import add_agents, add_group, add_keypairs, add_session

SESSIONS = 5000


def seed(conn: sa.Connection) -> None:
    add_keypairs(conn, "u1")
    add_group(conn, selector="dispersed")
    add_agents(conn, [f"agent-{i:03d}" for i in range(500)], cpu=10, mem="64g")
    now = time.time()
    for i in range(SESSIONS):
        add_session(conn, f"s{i:05d}", created=now + i / SESSIONS)


@pytest.mark.slow
async def test_a_long_pass_leaves_the_event_loop_and_the_database_to_the_api(
    tmp_path: Path,
) -> None:
    config = load_config(
        None,
        env={},
        overrides={
            "cluster": {"data_dir": str(tmp_path)},
            "manager": {"schedule_chunk": 100, "reconcile_interval": 60},
        },
    )
    async with (
        open_database(f"sqlite:///{tmp_path / 'manager.db'}") as db,
        open_agent_client(Secret("s")) as agents,
        open_storage_client("http://127.0.0.1:9", Secret("s")) as storage,  # unused here
    ):
        await db.run(seed)
        ctx = ManagerContext(config, db, MemoryEventBus(), agents, "manager-test", storage)
        lags: list[float] = []
        writes: list[float] = []

        def scheduled(c: sa.Connection) -> int:
            return int(
                c.execute(
                    sa.select(sa.func.count()).where(sessions.c.status == "SCHEDULED")
                ).scalar_one()
            )

        async def api_writes() -> None:
            n = 0
            while True:
                n += 1
                t0 = time.perf_counter()
                await db.run(
                    lambda c, n=n: c.execute(
                        keypairs.insert().values(
                            access_key=f"AK{n:06d}",
                            secret_key="s",
                            user_id="x",
                            role="user",
                            is_active=True,
                            created_at=0.0,
                        )
                    )
                )
                writes.append(time.perf_counter() - t0)
                await trio.sleep(0.02)

        async def loop_lag() -> None:
            while True:
                t0 = time.perf_counter()
                await trio.sleep(0.01)
                lags.append(time.perf_counter() - t0 - 0.01)

        t0 = time.perf_counter()
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_scheduler, ctx)
            nursery.start_soon(api_writes)
            nursery.start_soon(loop_lag)
            while True:
                if await db.run(scheduled) == SESSIONS:
                    break
                await trio.sleep(0.05)  # polling the database: there is no event to await
            nursery.cancel_scope.cancel()
        elapsed = time.perf_counter() - t0
    seen = (
        f"pass of {SESSIONS} placements: {elapsed:.2f} s; API writes during it: {len(writes)}, "
        f"slowest {max(writes):.3f} s; event loop lag max {max(lags):.3f} s"
    )
    # The pass is long, yet API writes got in throughout, and the event loop kept turning.
    assert len(writes) >= 5, seen
    assert max(writes) < min(0.5, elapsed / 3), seen
    assert max(lags) < 0.5, seen
