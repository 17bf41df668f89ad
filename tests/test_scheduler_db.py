"""The scheduling pass on a real database (SQLite): what it writes, and what it refuses."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import trio

from backendai.db import Database, open_database
from backendai.db.tables import agents, allocations, kernels, sessions
from backendai.manager.sched_commit import commit_starts
from backendai.manager.sched_snapshot import load_snapshot
from backendai.manager.scheduling import PassResult, run_pass
from backendai.manager.terminator import finish_kernel
from backendai.sched import ResourceSlots, plan_group, resolve_plugins

from .sched_db import (
    add_agents,
    add_group,
    add_keypairs,
    add_session,
    live_allocations,
    statuses,
    trace,
)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    async with open_database(f"sqlite:///{tmp_path / 'manager.db'}") as d:
        yield d


async def setup(db: Database, fn: Callable[[sa.Connection], Any]) -> None:
    await db.run(fn)


async def one_pass(db: Database, now: float = 1000.0, **kw: Any) -> PassResult:
    return await trio.to_thread.run_sync(
        lambda: run_pass(
            db.run_sync,
            now,
            pending_timeout=kw.get("pending_timeout", 0.0),
            chunk=kw.get("chunk", 500),
        )
    )


def base(conn: sa.Connection, **group: Any) -> None:
    add_keypairs(conn, "u1", "u2")
    add_group(conn, **group)


async def test_a_pass_places_writes_allocations_and_the_decision_trace(db: Database) -> None:
    def seed(c: sa.Connection) -> None:
        base(c)
        add_agents(c, ["a1", "a2"], cpu=2, mem="4g")
        add_session(c, "s1", created=1, cpu=2)
        add_session(c, "s2", created=2, cpu=2)
        add_session(c, "s3", created=3, cpu=2)

    await setup(db, seed)
    result = await one_pass(db)
    assert (result.pending, result.started, result.waiting) == (3, 2, 1)
    assert {c.session_id: c.new for c in result.changes if c} == {
        "s1": "SCHEDULED",
        "s2": "SCHEDULED",
    }

    def check(c: sa.Connection) -> None:
        assert statuses(c) == {"s1": "SCHEDULED", "s2": "SCHEDULED", "s3": "PENDING"}
        assert live_allocations(c) == {"s1-k0": "a1", "s2-k0": "a2"}
        assert (
            c.execute(sa.select(kernels.c.agent_id).where(kernels.c.id == "s1-k0")).scalar() == "a1"
        )
        assert trace(c, "s1")[-1] == (
            "SCHEDULED",
            None,
            "placed on a1 (resource group g, sequencer fifo, selector first-fit)",
        )
        status, check_name, detail = trace(c, "s3")[-1]
        assert (status, check_name) == ("PENDING", "resources")
        assert detail is not None
        assert detail.startswith("no agent can fit cpu=2 mem=1g now")

    await db.run(check)
    # Nothing changed: no new record.  A change in what is free updates the record in place.
    await one_pass(db)
    assert len(await db.run(lambda c: trace(c, "s3"))) == 2

    def grow(c: sa.Connection) -> None:
        c.execute(
            agents.update()
            .where(agents.c.id == "a1")
            .values(capacity=ResourceSlots.parse({"cpu": 3, "mem": "4g"}).to_json())
        )

    await db.run(grow)
    await one_pass(db)
    rows = await db.run(lambda c: trace(c, "s3"))
    assert len(rows) == 2
    assert "largest free: cpu=1 mem=3g (agent a1)" in (rows[-1][2] or "")


async def test_a_cluster_session_is_placed_whole_or_not_at_all(db: Database) -> None:
    def seed(c: sa.Connection) -> None:
        base(c)
        add_agents(c, ["a1", "a2"], cpu=2, mem="4g")
        add_session(c, "wide", cpu=1, size=3, mode="multi-node")
        add_session(c, "tall", cpu=2, size=2, mode="single-node", created=2)

    await setup(db, seed)
    await one_pass(db)
    assert await db.run(live_allocations) == {}
    assert await db.run(statuses) == {"wide": "PENDING", "tall": "PENDING"}
    detail = (await db.run(lambda c: trace(c, "wide")))[-1][2] or ""
    assert detail.startswith("kernel 3 of 3 (multi-node): only 2 agent(s) can fit")


async def test_dependencies_hold_then_start_or_cancel(db: Database) -> None:
    def seed(c: sa.Connection) -> None:
        base(c)
        add_agents(c, ["a1"])
        add_session(c, "dep", status="RUNNING", agent="a1", cpu=1)
        add_session(c, "next", created=2, depends_on=["dep"])

    await setup(db, seed)
    await one_pass(db)
    assert (await db.run(lambda c: trace(c, "next")))[-1] == (
        "PENDING",
        "dependencies",
        "waiting for 1 dependencies to finish: name-dep (RUNNING)",
    )

    def end_dep(code: int) -> Callable[[sa.Connection], None]:
        def _end(c: sa.Connection) -> None:
            c.execute(
                sessions.update()
                .where(sessions.c.id == "dep")
                .values(status="TERMINATED", exit_code=code, terminated_at=900.0)
            )

        return _end

    await db.run(end_dep(0))
    await one_pass(db)
    assert (await db.run(statuses))["next"] == "SCHEDULED"

    def another(c: sa.Connection) -> None:
        add_session(c, "after-fail", created=3, depends_on=["dep"])

    await db.run(another)
    await db.run(end_dep(2))
    result = await one_pass(db)
    assert result.cancelled == 1
    assert (await db.run(statuses))["after-fail"] == "CANCELLED"
    info = await db.run(
        lambda c: c.execute(
            sa.select(sessions.c.status_info).where(sessions.c.id == "after-fail")
        ).scalar()
    )
    assert info == "dependency-failed"


async def test_a_batch_session_waits_for_its_start_time(db: Database) -> None:
    def seed(c: sa.Connection) -> None:
        base(c)
        add_agents(c, ["a1"])
        add_session(c, "later", session_type="batch", starts_at=2000.0)

    await setup(db, seed)
    await one_pass(db, now=1000.0)
    assert (await db.run(lambda c: trace(c, "later")))[-1][:2] == ("PENDING", "starts-at")
    await one_pass(db, now=2000.0)
    assert (await db.run(statuses))["later"] == "SCHEDULED"


async def test_preemption_terminates_then_places(db: Database) -> None:
    def seed(c: sa.Connection) -> None:
        base(c, options={"preemption": "terminate"})
        add_agents(c, ["a1"], cpu=2, mem="4g")
        add_session(c, "low", status="RUNNING", agent="a1", cpu=2, preemptible=True)
        add_session(c, "high", created=2, cpu=2, priority=5)

    await setup(db, seed)
    result = await one_pass(db)
    assert result.preempted == 1
    assert await db.run(statuses) == {"low": "TERMINATING", "high": "PENDING"}
    low_trace = await db.run(lambda c: trace(c, "low"))
    assert (
        "RUNNING",
        "preempted",
        "preempted by session name-high (high, priority 5) in resource group 'g'",
    ) in low_trace
    # A second pass does not pick more victims while the first is on its way out.
    assert (await one_pass(db)).preempted == 0
    assert (await db.run(lambda c: trace(c, "high")))[-1][2] == (
        "waiting for 1 terminating session(s) to release their resources; now: no agent can fit "
        "cpu=2 mem=1g now; largest free: cpu=0 mem=3g (agent a1); short of cpu on 1 of 1 agents"
    )
    await db.run(lambda c: finish_kernel(c, "low-k0", "low", "preempted", None, 1001.0))
    await one_pass(db)
    assert await db.run(statuses) == {"low": "TERMINATED", "high": "SCHEDULED"}


async def test_preemption_with_requeue_queues_the_victim_again(db: Database) -> None:
    def seed(c: sa.Connection) -> None:
        base(c, options={"preemption": "requeue"})
        add_agents(c, ["a1"], cpu=2, mem="4g")
        add_session(c, "low", status="RUNNING", agent="a1", cpu=2, preemptible=True)
        add_session(c, "high", created=2, cpu=2, priority=5)

    await setup(db, seed)
    await one_pass(db)
    await db.run(lambda c: finish_kernel(c, "low-k0", "low", "preempted-requeue", None, 1001.0))
    result = await one_pass(db)
    [clone] = [c for c in result.changes if c is not None and c.reason == "requeued"]
    assert clone.session_name == "name-low"

    def check(c: sa.Connection) -> None:
        rows = {r.id: r for r in c.execute(sa.select(sessions))}
        assert rows["low"].status_info == "preempted-requeued"
        assert rows[clone.session_id].status == "PENDING"
        assert rows[clone.session_id].preemptible is True
        assert rows["high"].status == "SCHEDULED"

    await db.run(check)
    assert (await one_pass(db)).changes == []  # requeued once only


async def test_commit_refuses_a_plan_that_no_longer_holds(db: Database) -> None:
    def seed(c: sa.Connection) -> None:
        base(c)
        add_agents(c, ["a1"], cpu=2, mem="4g")
        add_session(c, "s1", cpu=2)
        add_session(c, "s2", cpu=1, created=2)

    await setup(db, seed)
    snap = await db.run(lambda c: load_snapshot(c, 1000.0))
    [g] = snap.groups
    starts = plan_group(g, resolve_plugins(g), 1000.0).started
    assert [d.session.id for d in starts] == ["s1"]

    def meanwhile(c: sa.Connection) -> None:  # another manager placed s2 on a1 first
        c.execute(
            kernels.update()
            .where(kernels.c.id == "s2-k0")
            .values(status="SCHEDULED", agent_id="a1")
        )
        c.execute(
            allocations.insert().values(
                kernel_id="s2-k0",
                agent_id="a1",
                slots={"cpu": "1", "mem": "1073741824"},
                allocated_at=999.0,
            )
        )

    await db.run(meanwhile)
    changes, refused = await db.run(
        lambda c: commit_starts(c, starts, 1000.0, snap.cluster_size, "test")
    )
    assert (changes, [d.session.id for d in refused]) == ([], ["s1"])
    assert await db.run(live_allocations) == {"s2-k0": "a1"}


async def test_a_session_cancelled_after_planning_is_not_placed(db: Database) -> None:
    def seed(c: sa.Connection) -> None:
        base(c)
        add_agents(c, ["a1"])
        add_session(c, "s1")

    await setup(db, seed)
    snap = await db.run(lambda c: load_snapshot(c, 1000.0))
    [g] = snap.groups
    starts = plan_group(g, resolve_plugins(g), 1000.0).started
    await db.run(lambda c: c.execute(kernels.update().values(status="CANCELLED")))
    _, refused = await db.run(lambda c: commit_starts(c, starts, 1000.0, snap.cluster_size, "test"))
    assert len(refused) == 1
    assert await db.run(live_allocations) == {}


async def test_roundrobin_continues_after_a_restart(db: Database) -> None:
    def seed(c: sa.Connection) -> None:
        base(c, selector="roundrobin")
        add_agents(c, ["a1", "a2", "a3"])
        add_session(c, "s1")

    await setup(db, seed)
    await one_pass(db)  # each pass is a fresh start: nothing is kept in memory
    await db.run(lambda c: add_session(c, "s2", created=2))
    await one_pass(db, now=1001.0)
    await db.run(lambda c: add_session(c, "s3", created=3))
    await one_pass(db, now=1002.0)
    assert await db.run(live_allocations) == {"s1-k0": "a1", "s2-k0": "a2", "s3-k0": "a3"}


async def test_fair_share_reads_usage_history_from_allocation_rows(db: Database) -> None:
    def seed(c: sa.Connection) -> None:
        base(c, sequencer="fair-share", options={"fair_share_half_life": 3600})
        add_agents(c, ["a1"], cpu=1, mem="4g")
        # u1 used the whole agent for most of the last hour; u2 used nothing.
        add_session(
            c, "past", user="u1", status="TERMINATED", agent="a1", created=100.0, exit_code=0
        )
        c.execute(allocations.update().values(allocated_at=200.0, released_at=3500.0))
        add_session(c, "u1-new", user="u1", created=3600.0)
        add_session(c, "u2-new", user="u2", created=3601.0)

    await setup(db, seed)
    await one_pass(db, now=3700.0)
    assert (await db.run(statuses))["u2-new"] == "SCHEDULED"
    assert (await db.run(statuses))["u1-new"] == "PENDING"


async def test_a_group_that_cannot_schedule_says_why(db: Database) -> None:
    def seed(c: sa.Connection) -> None:
        base(c, sequencer="no-such-policy")
        add_agents(c, ["a1"])
        add_session(c, "s1")

    await setup(db, seed)
    await one_pass(db)
    status, check, detail = (await db.run(lambda c: trace(c, "s1")))[-1]
    assert (status, check) == ("PENDING", "resource-group")
    assert detail is not None
    assert "unknown sequencer 'no-such-policy'; known: " in detail
