"""Two managers scheduling one database at once never double-allocate.

Each manager is a separate engine (its own connections) running scheduling
passes on its own thread while 1,000 sessions (some multi-node clusters) arrive
for room for 800 kernels, and the group's policy flips between FIFO and LIFO.  Afterwards no agent holds
more than its capacity, every session is placed whole or not at all, and the
room is used exactly.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
import trio

from backendai.db import Database, open_database
from backendai.db.tables import agents, allocations, kernels, resource_groups, sessions
from backendai.manager.scheduling import SQLITE_PAUSE, run_pass
from backendai.sched import ResourceSlots
from tests.services import fresh_pg_database

from .sched_db import add_agents, add_group, add_keypairs, add_session

AGENTS = 40
CPU_PER_AGENT = 20  # room for 800 one-cpu kernels
SESSIONS = 1000


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'manager.db'}"
    else:
        with fresh_pg_database() as url:
            yield url


def seed(conn: sa.Connection) -> None:
    add_keypairs(conn, "u1", "u2", "u3")
    add_group(conn, selector="concentrated")
    add_agents(conn, [f"agent-{i:03d}" for i in range(AGENTS)], cpu=CPU_PER_AGENT, mem="64g")


def add_sessions(conn: sa.Connection, first: int, count: int) -> None:
    for i in range(first, first + count):
        if i % 10 == 0:  # a two-kernel multi-node cluster
            add_session(
                conn, f"s{i:04d}", user=f"u{i % 3 + 1}", created=i, size=2, mode="multi-node"
            )
        else:
            add_session(conn, f"s{i:04d}", user=f"u{i % 3 + 1}", created=i)


def producer(db: Database, done: list[bool]) -> None:
    """Sessions keep arriving while the managers schedule, and an operator keeps switching
    the group between FIFO and LIFO: the two managers plan different sessions onto the
    same agents (concentrated packs them), so only the checks at commit keep them apart."""
    for n, first in enumerate(range(0, SESSIONS, 20)):
        db.run_sync(lambda c, first=first: add_sessions(c, first, 20))
        db.run_sync(
            lambda c, n=n: c.execute(
                resource_groups.update().values(scheduler="lifo" if n % 2 else "fifo")
            )
        )
    done[0] = True


def manager(db: Database, stats: list[int], arrivals_done: list[bool]) -> None:
    """Scheduling passes until arrivals are over and a pass has nothing to do."""
    now = 1000.0
    while True:
        now += 1
        finished = arrivals_done[0]
        result = run_pass(
            db.run_sync,
            now,
            pending_timeout=0,
            chunk=10,
            pause=SQLITE_PAUSE if db.dialect == "sqlite" else 0,
        )
        stats[0] += result.started
        stats[1] += result.refused
        if finished and not result.started and not result.refused:
            return


@pytest.mark.slow
async def test_two_managers_never_double_allocate(db_url: str) -> None:
    async with open_database(db_url) as setup_db:
        await setup_db.run(seed)
    async with (
        open_database(db_url, threads=2) as one,
        open_database(db_url, threads=2) as two,
        open_database(db_url, threads=1) as clients,
    ):
        stats = {"one": [0, 0], "two": [0, 0]}
        done = [False]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.to_thread.run_sync, producer, clients, done)
            nursery.start_soon(trio.to_thread.run_sync, manager, one, stats["one"], done)
            nursery.start_soon(trio.to_thread.run_sync, manager, two, stats["two"], done)
    # Both raced: each committed placements or had them refused because the other got
    # there first.  Between them they used exactly the room there was.
    assert all(started + refused > 0 for started, refused in stats.values()), stats
    async with open_database(db_url) as verify:
        await verify.run(check_no_double_allocation)


def check_no_double_allocation(conn: sa.Connection) -> None:
    capacity = {
        r.id: ResourceSlots.from_json(r.capacity)
        for r in conn.execute(sa.select(agents.c.id, agents.c.capacity))
    }
    held: dict[str, ResourceSlots] = defaultdict(ResourceSlots)
    placed_kernels: dict[str, list[str]] = defaultdict(list)
    rows = conn.execute(
        sa.select(
            allocations.c.agent_id, allocations.c.slots, kernels.c.session_id, kernels.c.status
        )
        .join(kernels, kernels.c.id == allocations.c.kernel_id)
        .where(allocations.c.released_at.is_(None))
    )
    for agent_id, slots, session_id, status in rows:
        assert status == "SCHEDULED"
        held[agent_id] = held[agent_id] + ResourceSlots.from_json(slots)
        placed_kernels[session_id].append(agent_id)
    for agent_id, h in held.items():
        assert h.fits_in(capacity[agent_id]), (
            f"{agent_id} holds {h.human()} > {capacity[agent_id].human()}"
        )
    sizes = dict(conn.execute(sa.select(sessions.c.id, sessions.c.cluster_size)).all())
    status = dict(conn.execute(sa.select(sessions.c.id, sessions.c.status)).all())
    for sid, placed in placed_kernels.items():
        assert len(placed) == sizes[sid], f"{sid}: {len(placed)} of {sizes[sid]} kernels placed"
        assert status[sid] == "SCHEDULED"
        if sizes[sid] > 1:
            assert len(set(placed)) == len(placed)  # multi-node: one agent per kernel
    pending = [sid for sid, st in status.items() if st == "PENDING"]
    assert not set(pending) & set(placed_kernels)
    assert sum(len(p) for p in placed_kernels.values()) == AGENTS * CPU_PER_AGENT
