"""Agent selection (backendai.sched.placement): first-fit, atomic multi-kernel placement, why not."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from backendai.errors import ConfigError
from backendai.sched import (
    AgentSnapshot,
    FirstFitSelector,
    KernelRequest,
    Placement,
    ResourceSlots,
    get_agent_selector,
    place_session,
)

PY = "backendai/python:3.11"
R = "r-base:4.3"


def agent(
    id: str,
    cpu: int | str = 4,
    mem: str = "8g",
    *,
    used_cpu: int | str = 0,
    used_mem: str = "0",
    arch: str = "x86_64",
    images: Sequence[str] = (PY,),
) -> AgentSnapshot:
    return AgentSnapshot(
        id=id,
        resource_group="default",
        architecture=arch,
        capacity=ResourceSlots.parse({"cpu": cpu, "mem": mem}),
        occupied=ResourceSlots.parse({"cpu": used_cpu, "mem": used_mem}),
        images=frozenset(images),
    )


def kernel(
    kid: str, cpu: int | str = 1, mem: str = "1g", *, image: str = PY, arch: str = "x86_64"
) -> KernelRequest:
    return KernelRequest(kid, image, arch, ResourceSlots.parse({"cpu": cpu, "mem": mem}))


FIRST_FIT = FirstFitSelector()


@pytest.mark.parametrize(
    ("kernels", "agents", "expected"),
    [
        pytest.param([kernel("k1")], [agent("a1")], {"k1": "a1"}, id="one-fits"),
        pytest.param(
            [kernel("k1")], [agent("b"), agent("a"), agent("c")], {"k1": "a"}, id="lowest-id-first"
        ),
        pytest.param(
            [kernel("k1", cpu=4)],
            [agent("a", used_cpu=1), agent("b")],
            {"k1": "b"},
            id="skips-a-busy-agent",
        ),
        pytest.param(
            [kernel("k1", mem="8g")],
            [agent("a", mem="4g"), agent("b", mem="8g")],
            {"k1": "b"},
            id="skips-a-small-agent",
        ),
        pytest.param(
            [kernel("k1", cpu=4, mem="8g")],
            [agent("a", cpu=4, mem="8g")],
            {"k1": "a"},
            id="exact-fit",
        ),
        pytest.param(
            [kernel("k1", cpu="0.1", mem="1.5g")],
            [agent("a", cpu="0.1", mem="1.5g")],
            {"k1": "a"},
            id="exact-fractional-fit",
        ),
        # Ids compare as strings: "agent-10" comes before "agent-2".
        pytest.param(
            [kernel("k1")],
            [agent("agent-2"), agent("agent-10")],
            {"k1": "agent-10"},
            id="string-order",
        ),
        pytest.param(
            [kernel("k1", cpu=2), kernel("k2", cpu=2)],
            [agent("a", cpu=4), agent("b", cpu=4)],
            {"k1": "a", "k2": "a"},
            id="packs-onto-the-first",
        ),
        pytest.param(
            [kernel("k1", cpu=3), kernel("k2", cpu=2)],
            [agent("a", cpu=4), agent("b", cpu=4)],
            {"k1": "a", "k2": "b"},
            id="earlier-kernels-count-against-the-agent",
        ),
        pytest.param(
            [kernel("k1", mem="6g"), kernel("k2", mem="6g"), kernel("k3", mem="2g")],
            [agent("a"), agent("b")],
            {"k1": "a", "k2": "b", "k3": "a"},
            id="fills-gaps-in-order",
        ),
        pytest.param(
            [kernel("k1", image=R), kernel("k2")],
            [agent("a"), agent("b", images=[PY, R])],
            {"k1": "b", "k2": "a"},
            id="image-filter",
        ),
        pytest.param(
            [kernel("k1", arch="aarch64")],
            [agent("a"), agent("b", arch="aarch64")],
            {"k1": "b"},
            id="architecture-filter",
        ),
    ],
)
def test_first_fit_placement(
    kernels: list[KernelRequest], agents: list[AgentSnapshot], expected: dict[str, str]
) -> None:
    placement = place_session(kernels, agents, FIRST_FIT)
    assert placement.ok
    assert dict(placement.assignments) == expected
    assert placement.reason == ""


@pytest.mark.parametrize(
    ("kernels", "agents", "reason"),
    [
        pytest.param([kernel("k1")], [], "no alive agent in the resource group", id="no-agents"),
        pytest.param(
            [kernel("k1", image=R)],
            [agent("a"), agent("b")],
            f"no alive agent has image {R} (x86_64), and the image catalog has no x86_64 "
            "build of it to pull",
            id="no-image",
        ),
        pytest.param(
            [kernel("k1", arch="aarch64")],
            [agent("a")],
            "no alive agent runs aarch64 (architectures here: x86_64)",
            id="no-architecture",
        ),
        pytest.param(
            # The image exists, but only for another architecture.
            [kernel("k1", arch="aarch64")],
            [agent("a", arch="x86_64", images=[PY]), agent("b", arch="aarch64", images=[R])],
            f"no alive agent has image {PY} (aarch64), and the image catalog has no aarch64 "
            "build of it to pull",
            id="image-on-other-architecture",
        ),
        pytest.param(
            [kernel("k1", cpu=8, mem="16g")],
            [agent("a", cpu=4, mem="8g", used_cpu=1), agent("b", cpu=2, mem="4g")],
            "no agent can fit cpu=8 mem=16g now; largest free: cpu=3 mem=8g (agent a); "
            "short of cpu on 2 of 2, mem on 2 of 2 agents",
            id="too-big",
        ),
        pytest.param(
            # The largest is judged among agents that have the image only.
            [kernel("k1", cpu=8)],
            [agent("a", cpu=64, images=[R]), agent("b", cpu=2, mem="2g")],
            "no agent can fit cpu=8 mem=1g now; largest free: cpu=2 mem=2g (agent b); "
            "short of cpu on 1 of 1 agents",
            id="largest-among-agents-with-the-image",
        ),
        pytest.param(
            # Occupancy from the session's own earlier kernels counts in the message.
            [kernel("k1", cpu=3), kernel("k2", cpu=3)],
            [agent("a", cpu=4)],
            "kernel 2 of 2: no agent can fit cpu=3 mem=1g now; largest free: cpu=1 mem=7g "
            "(agent a); short of cpu on 1 of 1 agents",
            id="earlier-kernels-in-the-reason",
        ),
    ],
)
def test_why_not(kernels: list[KernelRequest], agents: list[AgentSnapshot], reason: str) -> None:
    placement = place_session(kernels, agents, FIRST_FIT)
    assert not placement.ok
    assert placement.assignments == {}
    assert placement.reason == reason


def test_placement_is_atomic_all_or_none() -> None:
    agents = [agent("a", cpu=4), agent("b", cpu=4)]
    kernels = [kernel("k1", cpu=4), kernel("k2", cpu=4), kernel("k3", cpu=1)]
    placement = place_session(kernels, agents, FIRST_FIT)
    assert placement == Placement({}, placement.reason)
    assert not placement.ok
    assert "cpu=1 mem=1g" in placement.reason
    # The snapshots handed in are untouched: nothing was reserved on them.
    assert [a.occupied for a in agents] == [ResourceSlots(), ResourceSlots()]
    # Without the kernel that does not fit, the rest places.
    assert place_session(kernels[:2], agents, FIRST_FIT).assignments == {"k1": "a", "k2": "b"}


def test_agent_free_is_capacity_minus_occupied() -> None:
    a = agent("a", cpu=4, mem="8g", used_cpu="1.5", used_mem="2g")
    assert a.free == ResourceSlots.parse({"cpu": "2.5", "mem": "6g"})


@pytest.mark.parametrize(
    ("candidates", "expected"),
    [([], None), ([agent("b"), agent("a")], "a"), ([agent("z")], "z")],
)
def test_first_fit_selector(candidates: list[AgentSnapshot], expected: str | None) -> None:
    assert FIRST_FIT.select(kernel("k"), candidates) == expected


class LastFit:
    """A selector plugin: the highest id among the candidates."""

    name = "last-fit"

    def select(self, request: KernelRequest, candidates: Sequence[AgentSnapshot]) -> str | None:
        return max((a.id for a in candidates), default=None)


def test_a_selector_plugin_drives_placement() -> None:
    placement = place_session(
        [kernel("k1"), kernel("k2", image=R)],
        [agent("a", images=[PY, R]), agent("b", images=[PY, R]), agent("c")],
        LastFit(),
    )
    assert placement.assignments == {"k1": "c", "k2": "b"}


def test_a_selector_that_declines_gives_the_reason() -> None:
    class Never:
        name = "never"

        def select(self, request: KernelRequest, candidates: Sequence[AgentSnapshot]) -> None:
            return None

    placement = place_session([kernel("k1")], [agent("a", cpu=2)], Never())
    assert not placement.ok
    assert placement.reason == (
        "agent selector 'never' chose none of the 1 agents that can fit cpu=1 mem=1g"
    )


def test_get_agent_selector() -> None:
    assert isinstance(get_agent_selector("first-fit"), FirstFitSelector)
    with pytest.raises(ConfigError, match=r"unknown agent selector 'best-fit'; known: .*first-fit"):
        get_agent_selector("best-fit")
