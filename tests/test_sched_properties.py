"""Property tests of the planner (hypothesis): random clusters, queues and policies.

* no agent is ever oversubscribed on any slot;
* a cluster session is all or nothing (single-node: one agent; multi-node: one per kernel);
* FIFO starts sessions in submission order, and what it skips did not fit;
* DRF never starts a session for a user with a higher dominant share while a user
  with a lower share waits with a session that fits;
* no session starts while a higher-priority one that fits waits;
* each selector's fast index picks the agent its plain form picks (among the agents
  without devices first, for work that asks for none).
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from backendai.sched import (
    AgentPool,
    AgentSnapshot,
    FirstFitSelector,
    GroupPlan,
    KernelRequest,
    PendingSession,
    ResourceSlots,
    dominant_share,
    get_agent_selector,
    place,
    place_session,
)
from backendai.sched.blocks import BlockedFree

from .sched_fixtures import PY, plan

SEQUENCERS = ["fifo", "lifo", "drf", "fair-share"]
SELECTORS = ["first-fit", "concentrated", "dispersed", "roundrobin"]
halves = st.integers(min_value=1, max_value=16).map(lambda n: Decimal(n) / 2)


@st.composite
def agents(draw: st.DrawFn) -> list[AgentSnapshot]:
    out = []
    for i in range(draw(st.integers(min_value=1, max_value=6))):
        cap: dict[str, object] = {
            "cpu": draw(halves),
            "mem": f"{draw(st.integers(min_value=1, max_value=16))}g",
        }
        gpus = draw(st.integers(min_value=0, max_value=4))
        if gpus:
            cap["cuda.device"] = gpus
        capacity = ResourceSlots.parse(cap)
        used = {
            s: v * draw(st.sampled_from([0, 0, Decimal("0.5"), 1])) for s, v in capacity.items()
        }
        out.append(
            AgentSnapshot(
                f"agent-{i:02d}", "g", "x86_64", capacity, ResourceSlots(used), frozenset({PY})
            )
        )
    return out


@st.composite
def queue(draw: st.DrawFn, *, priorities: bool = True) -> list[PendingSession]:
    out = []
    for i in range(draw(st.integers(min_value=0, max_value=20))):
        slots = {"cpu": draw(halves), "mem": f"{draw(st.integers(min_value=1, max_value=8))}g"}
        if draw(st.booleans()):
            slots["cuda.device"] = draw(st.integers(min_value=1, max_value=2))
        size = draw(st.integers(min_value=1, max_value=3))
        req = ResourceSlots.parse(slots)
        out.append(
            PendingSession(
                id=f"s{i:02d}",
                name=f"s{i:02d}",
                access_key=draw(st.sampled_from(["u1", "u2", "u3"])),
                resource_group="g",
                priority=draw(st.integers(min_value=0, max_value=2)) if priorities else 0,
                created_at=float(i),
                kernels=tuple(
                    KernelRequest(f"s{i:02d}/{k}", PY, "x86_64", req) for k in range(size)
                ),
                cluster_mode=draw(st.sampled_from(["single-node", "multi-node"])),
            )
        )
    return out


def fits_now(
    free: dict[str, ResourceSlots], all_agents: list[AgentSnapshot], s: PendingSession
) -> bool:
    """Could *s* be placed on the agents with *free* capacity (any selector)?"""
    snaps = [
        AgentSnapshot(
            a.id, a.resource_group, a.architecture, a.capacity, a.capacity - free[a.id], a.images
        )
        for a in all_agents
    ]
    return place(AgentPool(snaps, FirstFitSelector()), s.kernels, s.cluster_mode).ok


def replay(
    all_agents: list[AgentSnapshot], p: GroupPlan, check: object
) -> dict[str, ResourceSlots]:
    """Apply the starts in order; call check(free, started_so_far, decision) before each."""
    free = {a.id: a.free for a in all_agents}
    done: list[PendingSession] = []
    for d in p.started:
        check(free, done, d)  # type: ignore[operator]
        for k in d.session.kernels:
            free[d.assignments[k.kernel_id]] = free[d.assignments[k.kernel_id]] - k.slots
        done.append(d.session)
    return free


@settings(max_examples=300, deadline=None)
@given(agents(), queue(), st.sampled_from(SEQUENCERS), st.sampled_from(SELECTORS), st.booleans())
def test_no_oversubscription_all_or_nothing_and_priority(
    cluster: list[AgentSnapshot],
    pending: list[PendingSession],
    sequencer: str,
    selector: str,
    hol: bool,
) -> None:
    p = plan(
        cluster, pending, sequencer=sequencer, selector=selector, options={"hol_blocking": hol}
    )
    assert sorted(d.session.id for d in p.decisions) == sorted(s.id for s in pending)

    def higher_priority_waits_only_if_it_cannot_fit(
        free: dict[str, ResourceSlots], done: list[PendingSession], d: object
    ) -> None:
        s = d.session  # type: ignore[attr-defined]
        for other in pending:
            if other.priority > s.priority and other not in done:
                assert not fits_now(free, cluster, other), f"{s.id} started while {other.id} fits"

    free = replay(cluster, p, higher_priority_waits_only_if_it_cannot_fit)
    for a in cluster:
        assert all(v >= 0 for v in free[a.id].values()), f"{a.id} oversubscribed: {free[a.id]}"
    for d in p.started:
        placed = [d.assignments[k.kernel_id] for k in d.session.kernels]
        assert len(placed) == len(d.session.kernels)
        if d.session.cluster_mode == "single-node":
            assert len(set(placed)) == 1
        else:
            assert len(set(placed)) == len(placed)
    for d in p.decisions:
        if d.action != "start":
            assert d.assignments == {}


@settings(max_examples=300, deadline=None)
@given(agents(), queue(priorities=False), st.sampled_from(SELECTORS))
def test_fifo_starts_in_submission_order_and_skips_only_what_does_not_fit(
    cluster: list[AgentSnapshot], pending: list[PendingSession], selector: str
) -> None:
    p = plan(cluster, pending, sequencer="fifo", selector=selector)
    order = [d.session.created_at for d in p.started]
    assert order == sorted(order)
    started = {d.session.id for d in p.started}

    def earlier_waiting_sessions_do_not_fit(
        free: dict[str, ResourceSlots], done: list[PendingSession], d: object
    ) -> None:
        s = d.session  # type: ignore[attr-defined]
        for other in pending:
            if other.created_at < s.created_at and other.id not in started:
                assert not fits_now(free, cluster, other), f"{other.id} fits but {s.id} went first"

    replay(cluster, p, earlier_waiting_sessions_do_not_fit)


@settings(max_examples=300, deadline=None)
@given(agents(), queue(priorities=False), st.sampled_from(SELECTORS))
def test_drf_never_favours_a_higher_dominant_share(
    cluster: list[AgentSnapshot], pending: list[PendingSession], selector: str
) -> None:
    p = plan(cluster, pending, sequencer="drf", selector=selector)
    capacity = ResourceSlots()
    for a in cluster:
        capacity = capacity + a.capacity
    usage: dict[str, ResourceSlots] = defaultdict(ResourceSlots)

    def lower_shares_waiting_do_not_fit(
        free: dict[str, ResourceSlots], done: list[PendingSession], d: object
    ) -> None:
        s = d.session  # type: ignore[attr-defined]
        mine = dominant_share(usage[s.access_key], capacity)
        for other in pending:
            if other in done or other.access_key == s.access_key:
                continue
            if dominant_share(usage[other.access_key], capacity) < mine:
                assert not fits_now(free, cluster, other), (
                    f"{s.id} of {s.access_key} (share {mine}) started while {other.id} of "
                    f"{other.access_key} (lower share) fits"
                )
        usage[s.access_key] = usage[s.access_key] + s.slots

    replay(cluster, p, lower_shares_waiting_do_not_fit)


@settings(max_examples=300, deadline=None)
@given(
    agents(), halves, st.integers(min_value=1, max_value=8), st.sampled_from(SELECTORS), st.data()
)
def test_each_selector_index_agrees_with_its_plain_form(
    cluster: list[AgentSnapshot], cpu: Decimal, mem: int, selector: str, data: st.DataObject
) -> None:
    req = KernelRequest("k", PY, "x86_64", ResourceSlots.parse({"cpu": cpu, "mem": f"{mem}g"}))
    last = data.draw(st.sampled_from([None, *[a.id for a in cluster]]))
    plain = get_agent_selector(selector)
    if selector == "roundrobin":
        plain.last = last  # type: ignore[attr-defined]
    fitting = [a for a in cluster if req.slots.fits_in(a.free)]
    # Work that asks for no device goes to agents without devices when one fits.
    without_devices = [a for a in fitting if set(a.capacity) <= {"cpu", "mem"}]
    expected = plain.select(req, without_devices or fitting)
    pool = AgentPool(cluster, get_agent_selector(selector), last_agent=last)
    got = place(pool, [req]).assignments.get("k")
    assert got == expected
    assert place_session([req], cluster, get_agent_selector(selector)).ok == (expected is not None)


small = st.integers(min_value=0, max_value=6).map(Decimal)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(small, small), min_size=1, max_size=40),
    st.integers(min_value=1, max_value=4),
    st.lists(
        st.tuples(st.integers(min_value=0, max_value=39), small, small, small, small),
        max_size=60,
    ),
)
def test_blocked_index_finds_what_a_scan_finds(
    frees: list[tuple[Decimal, Decimal]],
    block: int,
    steps: list[tuple[int, Decimal, Decimal, Decimal, Decimal]],
) -> None:
    """Under any sequence of updates, the first and last fit equal a plain sorted scan."""
    key = {i: ((f, f"a{i:02d}"), i) for i, f in enumerate(frees)}
    index = BlockedFree(key.values(), block=block)
    for agent, x, y, need_x, need_y in steps:
        i = agent % len(frees)
        index.remove(key[i])
        key[i] = (((x, y), f"a{i:02d}"), i)
        index.add(key[i])
        need = (need_x, need_y)
        ordered = sorted(key.values())
        fitting = [e[1] for e in ordered if e[0][0][0] >= need[0] and e[0][0][1] >= need[1]]
        exclude = {fitting[0]} if len(fitting) > 1 and need_x % 2 else set()
        allowed = [i for i in fitting if i not in exclude]
        assert index.first_fit(need, exclude) == (allowed[0] if allowed else None)
        assert index.last_fit(need, exclude) == (allowed[-1] if allowed else None)
