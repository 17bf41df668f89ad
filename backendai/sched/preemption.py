"""Preemption: which lower-priority, preemptible sessions to stop so that one fits.

Used when a resource group's ``preemption`` option is ``terminate`` or
``requeue`` and a pending session does not fit.  If sessions already on their
way out (TERMINATING) would free enough, nothing more is stopped: the session
waits for them.  Otherwise candidates are taken lowest priority first, and
among equals the most recently started first (the least work lost), until the
session would fit; then any victim that turns out not to be needed is spared.
A session that lands on one agent (one kernel, or single-node) takes its
victims from the one agent that needs the fewest of them.
Everything here is a what-if on the pool: it is left as it was found.  Pure.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

from .model import PendingSession, RunningSession
from .placement import place
from .pool import AgentPool

__all__ = ["MAX_CANDIDATES", "PreemptionPlan", "plan_preemption"]

# At most this many running sessions are considered as victims for one session.
MAX_CANDIDATES = 256


@dataclass(frozen=True)
class PreemptionPlan:
    victims: tuple[RunningSession, ...]  # empty: wait for sessions already terminating
    detail: str


def plan_preemption(
    pool: AgentPool,
    session: PendingSession,
    running: Sequence[RunningSession],
    spared: Collection[str] = (),
) -> PreemptionPlan | None:
    """Victims that make *session* fit, or None when no choice would.

    *spared*: ids of sessions not to choose (already chosen in this pass).
    """
    leaving = [r for r in running if r.status == "TERMINATING"]
    if leaving and _fits_without(pool, session, leaving):
        return PreemptionPlan(
            (),
            f"waiting for {len(leaving)} terminating session(s) to release their resources",
        )
    candidates = sorted(
        (
            r
            for r in running
            if r.preemptible
            and r.priority < session.priority
            and r.status != "TERMINATING"
            and r.id not in spared
        ),
        key=lambda r: (r.priority, -r.started_at, r.id),
    )[:MAX_CANDIDATES]
    one_agent = len(session.kernels) == 1 or session.cluster_mode == "single-node"
    chosen = _on_one_agent(pool, session, candidates, leaving) if one_agent else None
    if chosen is None:
        chosen = _greedy(pool, session, candidates, leaving)
    if chosen is None:
        return None
    names = ", ".join(f"{r.id} (priority {r.priority})" for r in chosen)
    return PreemptionPlan(
        tuple(chosen),
        f"preempting {len(chosen)} lower-priority session(s) to make room: {names}",
    )


def _greedy(
    pool: AgentPool,
    session: PendingSession,
    candidates: Sequence[RunningSession],
    leaving: Sequence[RunningSession],
) -> list[RunningSession] | None:
    """Take candidates in order until the session fits; then spare those not needed."""
    chosen: list[RunningSession] = []
    for r in candidates:
        chosen.append(r)
        if _fits_without(pool, session, [*leaving, *chosen]):
            break
    else:
        return None
    for r in list(reversed(chosen[:-1])):
        rest = [c for c in chosen if c is not r]
        if _fits_without(pool, session, [*leaving, *rest]):
            chosen = rest
    return chosen


def _on_one_agent(
    pool: AgentPool,
    session: PendingSession,
    candidates: Sequence[RunningSession],
    leaving: Sequence[RunningSession],
) -> list[RunningSession] | None:
    """For a session that lands on one agent: the agent that needs the fewest victims
    (then the lowest priorities, then the least work lost), victims taken in candidate
    order on that agent."""
    on_agent: dict[str, list[RunningSession]] = {}
    for r in candidates:
        for agent_id in dict.fromkeys(a for a, _ in r.allocations):
            on_agent.setdefault(agent_id, []).append(r)
    best: tuple[tuple[int, int, float, str], list[RunningSession]] | None = None
    for agent_id, victims in on_agent.items():
        chosen = _greedy(pool, session, victims, leaving)
        if chosen is not None:
            # Fewest victims, lowest priority, then the least work lost (latest starts).
            lost = -sum(r.started_at for r in chosen)
            score = (len(chosen), max(r.priority for r in chosen), lost, agent_id)
            if best is None or score < best[0]:
                best = (score, chosen)
    return None if best is None else best[1]


def _fits_without(pool: AgentPool, session: PendingSession, gone: Iterable[RunningSession]) -> bool:
    """Would *session* fit if *gone* released everything they hold?  Leaves *pool* as found."""
    freed = [
        (pool.position[agent], vec)
        for r in gone
        for agent, slots in r.allocations
        if agent in pool.position and (vec := pool.vector(slots)) is not None
    ]
    cursor = pool.last_agent
    for i, vec in freed:
        pool.release(i, vec, forget_failures=True)
    try:
        placement = place(pool, session.kernels, session.cluster_mode)
        if placement.ok:
            for k in session.kernels:
                vec = pool.vector(k.slots)
                assert vec is not None
                pool.release(pool.position[placement.assignments[k.kernel_id]], vec)
        return placement.ok
    finally:
        for i, vec in freed:
            pool.reserve(i, vec)
        pool.failed.clear()
        pool.last_agent = cursor
