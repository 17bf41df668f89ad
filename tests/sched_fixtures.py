"""Builders for the scheduler's pure tests: agents, pending and running sessions, a plan."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from backendai.sched import (
    AgentSnapshot,
    Dependency,
    GroupOptions,
    GroupPlan,
    GroupSnapshot,
    KernelRequest,
    PendingSession,
    ResourceSlots,
    RunningSession,
    plan_group,
    resolve_plugins,
)

PY = "backendai/python:3.11"


def agent(id: str, cpu: int | str = 4, mem: str = "8g", **extra: Any) -> AgentSnapshot:
    used = extra.pop("used", {})
    return AgentSnapshot(
        id=id,
        resource_group="g",
        architecture="x86_64",
        capacity=ResourceSlots.parse({"cpu": cpu, "mem": mem, **extra}),
        occupied=ResourceSlots.parse(used),
        images=frozenset({PY}),
    )


def session(
    id: str,
    t: float,
    *,
    user: str = "u1",
    cpu: int | str = 1,
    mem: str = "1g",
    size: int = 1,
    mode: str = "single-node",
    priority: int = 0,
    starts_at: float | None = None,
    deps: Sequence[Dependency] = (),
    preemptible: bool = False,
) -> PendingSession:
    slots = ResourceSlots.parse({"cpu": cpu, "mem": mem})
    return PendingSession(
        id=id,
        name=f"name-{id}",
        access_key=user,
        resource_group="g",
        priority=priority,
        created_at=t,
        kernels=tuple(KernelRequest(f"{id}/{i}", PY, "x86_64", slots) for i in range(size)),
        cluster_mode=mode,
        preemptible=preemptible,
        starts_at=starts_at,
        dependencies=tuple(deps),
    )


def running(
    id: str,
    agent_id: str,
    *,
    user: str = "u9",
    cpu: int | str = 1,
    mem: str = "1g",
    priority: int = 0,
    preemptible: bool = True,
    status: str = "RUNNING",
    started: float = 0.0,
) -> RunningSession:
    slots = ResourceSlots.parse({"cpu": cpu, "mem": mem})
    return RunningSession(
        id, user, "g", priority, preemptible, status, started, ((agent_id, slots),)
    )


def occupied_by(
    agents: Sequence[AgentSnapshot], run: Sequence[RunningSession]
) -> list[AgentSnapshot]:
    """*agents* with the allocations of *run* counted as occupied."""
    out = []
    for a in agents:
        used = a.occupied
        for r in run:
            for agent_id, slots in r.allocations:
                if agent_id == a.id:
                    used = used + slots
        out.append(
            AgentSnapshot(a.id, a.resource_group, a.architecture, a.capacity, used, a.images)
        )
    return out


def plan(
    agents: Sequence[AgentSnapshot],
    pending: Sequence[PendingSession],
    *,
    sequencer: str = "fifo",
    selector: str = "first-fit",
    options: dict[str, Any] | None = None,
    run: Sequence[RunningSession] = (),
    now: float = 1000.0,
    pending_timeout: float = 0.0,
    history: dict[str, float] | None = None,
) -> GroupPlan:
    g = GroupSnapshot(
        name="g",
        agents=occupied_by(agents, run),
        pending=pending,
        running=run,
        options=GroupOptions.parse(options or {}, group="g"),
        sequencer=sequencer,
        agent_selector=selector,
        history=history or {},
    )
    return plan_group(g, resolve_plugins(g), now, pending_timeout)


def started(p: GroupPlan) -> list[str]:
    return [d.session.id for d in p.started]


def waits(p: GroupPlan) -> dict[str, tuple[str, str]]:
    return {d.session.id: (d.check, d.detail) for d in p.decisions if d.action == "wait"}
