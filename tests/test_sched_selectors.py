"""Agent selectors (backendai.sched.selectors) and the image policy of placement.

Every built-in selector is checked twice: its plain ``select`` over the agents
that fit, and its fast index over the pool, which must choose the same agent.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from backendai.sched import (
    AgentPool,
    AgentSnapshot,
    ConcentratedSelector,
    DispersedSelector,
    FirstFitSelector,
    KernelRequest,
    ResourceSlots,
    RoundRobinSelector,
    place,
    place_session,
)

PY = "backendai/python:3.11"


def agent(
    id: str,
    cpu: int | str = 8,
    mem: str = "16g",
    *,
    used_cpu: int | str = 0,
    used_mem: str = "0",
    gpu: int = 0,
    arch: str = "x86_64",
    images: Sequence[str] = (PY,),
) -> AgentSnapshot:
    cap: dict[str, object] = {"cpu": cpu, "mem": mem}
    if gpu:
        cap["cuda.device"] = gpu
    return AgentSnapshot(
        id=id,
        resource_group="default",
        architecture=arch,
        capacity=ResourceSlots.parse(cap),
        occupied=ResourceSlots.parse({"cpu": used_cpu, "mem": used_mem}),
        images=frozenset(images),
    )


def kernel(
    kid: str = "k",
    cpu: int | str = 1,
    mem: str = "1g",
    *,
    gpu: int = 0,
    image: str = PY,
    pullable: bool = False,
) -> KernelRequest:
    slots: dict[str, object] = {"cpu": cpu, "mem": mem}
    if gpu:
        slots["cuda.device"] = gpu
    return KernelRequest(kid, image, "x86_64", ResourceSlots.parse(slots), pullable)


# Free capacity after the used amounts: a=cpu 2, b=cpu 6, c=cpu 4, d=cpu 6 (all mem 16g).
FOUR = [
    agent("a", used_cpu=6),
    agent("b", used_cpu=2),
    agent("c", used_cpu=4),
    agent("d", used_cpu=2),
]


@pytest.mark.parametrize(
    ("selector", "request_cpu", "agents", "expected"),
    [
        pytest.param(FirstFitSelector(), 1, FOUR, "a", id="first-fit-lowest-id"),
        pytest.param(FirstFitSelector(), 3, FOUR, "b", id="first-fit-skips-too-small"),
        pytest.param(ConcentratedSelector(), 1, FOUR, "a", id="concentrated-least-free"),
        pytest.param(ConcentratedSelector(), 3, FOUR, "c", id="concentrated-least-free-that-fits"),
        pytest.param(ConcentratedSelector(), 5, FOUR, "b", id="concentrated-tie-lowest-id"),
        pytest.param(DispersedSelector(), 1, FOUR, "d", id="dispersed-most-free-tie-highest-id"),
        pytest.param(DispersedSelector(), 6, FOUR, "d", id="dispersed-exact"),
        pytest.param(DispersedSelector(), 7, FOUR, None, id="dispersed-none-fits"),
        pytest.param(
            ConcentratedSelector(),
            1,
            [agent("x", gpu=2), agent("y", cpu=2)],
            "y",
            id="concentrated-keeps-gpu-agents-free",
        ),
        pytest.param(
            DispersedSelector(),
            kernel(gpu=1),
            [agent("x", cpu=64, gpu=1), agent("y", gpu=2)],
            "y",
            id="dispersed-ranks-device-slots-first",
        ),
    ],
)
def test_selectors_choose_and_their_index_agrees(
    selector: FirstFitSelector | ConcentratedSelector | DispersedSelector,
    request_cpu: int | KernelRequest,
    agents: list[AgentSnapshot],
    expected: str | None,
) -> None:
    req = request_cpu if isinstance(request_cpu, KernelRequest) else kernel(cpu=request_cpu)
    candidates = [a for a in agents if req.slots.fits_in(a.free)]
    assert selector.select(req, candidates) == expected
    placement = place_session([req], agents, selector)
    assert dict(placement.assignments) == ({} if expected is None else {"k": expected})


@pytest.mark.parametrize(
    "selector",
    [FirstFitSelector(), ConcentratedSelector(), DispersedSelector(), RoundRobinSelector()],
)
def test_work_without_devices_keeps_off_device_agents_while_others_fit(
    selector: FirstFitSelector,
) -> None:
    agents = [agent("a-gpu", cpu=64, gpu=4), agent("b", cpu=2), agent("c", cpu=2, used_cpu=1)]
    pool = AgentPool(agents, selector)
    got = [place(pool, [kernel(f"k{i}")]).assignments[f"k{i}"] for i in range(4)]
    assert sorted(got[:3]) == ["b", "b", "c"]
    assert got[3] == "a-gpu"  # the rest go where they fit


def test_roundrobin_rotates_from_the_last_placed_agent() -> None:
    agents = [agent(x) for x in ("a", "b", "c")]
    pool = AgentPool(agents, RoundRobinSelector(), last_agent="b")
    chosen = [place(pool, [kernel(f"k{i}")]).assignments[f"k{i}"] for i in range(5)]
    assert chosen == ["c", "a", "b", "c", "a"]
    assert pool.last_agent == "a"


def test_roundrobin_skips_agents_that_do_not_fit_and_wraps() -> None:
    agents = [agent("a"), agent("b", used_cpu=8), agent("c", used_cpu=8)]
    pool = AgentPool(agents, RoundRobinSelector(), last_agent="a")
    assert place(pool, [kernel()]).assignments == {"k": "a"}


def test_roundrobin_plain_form_remembers_its_last_choice() -> None:
    sel = RoundRobinSelector()
    agents = [agent(x) for x in ("a", "b", "c")]
    assert [sel.select(kernel(), agents) for _ in range(4)] == ["a", "b", "c", "a"]


def test_image_policy_prefers_agents_with_the_image() -> None:
    agents = [agent("a", images=[]), agent("b")]
    placement = place_session([kernel(pullable=True)], agents, FirstFitSelector())
    assert placement.assignments == {"k": "b"}


def test_image_policy_accepts_an_agent_that_can_pull() -> None:
    agents = [agent("a", images=[]), agent("b", used_cpu=8)]
    placement = place_session([kernel(pullable=True)], agents, FirstFitSelector())
    assert placement.assignments == {"k": "a"}


def test_an_image_not_in_the_catalog_needs_an_agent_that_has_it() -> None:
    agents = [agent("a", images=[]), agent("b", used_cpu=8)]
    placement = place_session([kernel(pullable=False)], agents, FirstFitSelector())
    assert not placement.ok
    assert placement.reason.startswith("no agent can fit cpu=1 mem=1g now")


def test_single_node_puts_every_kernel_on_one_agent() -> None:
    agents = [agent("a", cpu=2), agent("b", cpu=4)]
    ks = [kernel("k1", cpu=2), kernel("k2", cpu=2)]
    assert place_session(ks, agents, FirstFitSelector(), mode="single-node").assignments == {
        "k1": "b",
        "k2": "b",
    }


def test_single_node_fails_when_no_agent_fits_the_sum() -> None:
    agents = [agent("a", cpu=2), agent("b", cpu=2)]
    placement = place_session(
        [kernel("k1", cpu=2), kernel("k2", cpu=2)], agents, FirstFitSelector(), mode="single-node"
    )
    assert not placement.ok
    assert placement.reason.startswith(
        "single-node, 2 kernels together: no agent can fit cpu=4 mem=2g now"
    )


def test_multi_node_puts_each_kernel_on_its_own_agent() -> None:
    agents = [agent("a"), agent("b"), agent("c")]
    ks = [kernel(f"k{i}") for i in range(3)]
    got = place_session(ks, agents, ConcentratedSelector(), mode="multi-node").assignments
    assert sorted(got.values()) == ["a", "b", "c"]


def test_multi_node_needs_enough_distinct_agents() -> None:
    pool = AgentPool([agent("a"), agent("b")], FirstFitSelector())
    placement = place(pool, [kernel(f"k{i}") for i in range(3)], "multi-node")
    assert not placement.ok
    assert "multi-node needs one agent per kernel" in placement.reason
    assert pool.free == pool.capacity  # nothing stays reserved


def test_a_slot_no_agent_has_is_named() -> None:
    placement = place_session([kernel(gpu=1)], [agent("a")], FirstFitSelector())
    assert placement.reason == (
        "no alive agent here has slot cuda.device (asked cpu=1 cuda.device=1 mem=1g; "
        "slots here: cpu, mem)"
    )


def test_device_slots_advertised_by_agents_are_placed() -> None:
    agents = [agent("a", gpu=1), agent("b", gpu=4)]
    placement = place_session([kernel(gpu=2)], agents, FirstFitSelector())
    assert placement.assignments == {"k": "b"}


def test_fractional_slots_are_exact() -> None:
    shares = ResourceSlots.parse({"cuda.shares": "0.1"})
    a = AgentSnapshot(
        "a", "default", "x86_64", ResourceSlots.parse({"cuda.shares": "0.3"}), ResourceSlots(),
        frozenset({PY}),
    )  # fmt: skip
    pool = AgentPool([a], FirstFitSelector())
    reqs = [KernelRequest(f"k{i}", PY, "x86_64", shares) for i in range(4)]
    assert [place(pool, [r]).ok for r in reqs] == [True, True, True, False]
