"""Properties of allocation over random request sequences (hypothesis).

On every generated machine, under both policies and both CUDA slot modes:

* no CPU, GPU or share is handed out twice: per unit, the live allocations
  add up to at most its capacity; a kernel takes at most one of a CPU or GPU,
  and whole GPUs only where the slot is ``cuda.device``;
* an allocation holds exactly what was asked; a refused one changes nothing;
* releasing restores the exact free set (an allocate-release pair leaves no
  trace, and releasing everything gives back the whole capacity);
* the allocations rebuilt from their recorded JSON (the container labels) give
  the same free set.
"""

from __future__ import annotations

import contextlib
import time
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backendai.agent.allocator import Allocator
from backendai.agent.backend import KernelInfo
from backendai.config import AgentConfig
from backendai.errors import InsufficientResources
from backendai.hw import Allocation, SlotMode, Topology, load_device_plugins, read_topology
from backendai.sched.slots import ResourceSlots
from tests.sysfs_fixtures import write_all

G = 1024**3
MODES = [
    (machine, policy, cuda)
    for machine in ("server", "epyc", "workstation", "vm")
    for policy in ("prefer-single-node", "interleaved")
    for cuda in ("cuda.device", "cuda.shares")
]


@pytest.fixture(scope="module")
def topologies(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Topology]:
    roots = write_all(tmp_path_factory.mktemp("sysfs"))
    return {name: read_topology(root) for name, root in roots.items()}


def requests(cuda: str) -> st.SearchStrategy[ResourceSlots]:
    gpu = [0, 1, 2, 3, 8] + (
        [Decimal("0.25"), Decimal("0.5"), Decimal("1.5")] if cuda == "cuda.shares" else []
    )
    return st.builds(
        lambda cpu, mem, g: ResourceSlots({"cpu": cpu, "mem": mem, cuda: Decimal(g)}),
        st.sampled_from([Decimal(x) for x in ("0", "0.1", "0.25", "0.5", "1", "1.5", "2", "3", "7", "16", "40")]),
        st.sampled_from([Decimal(0), Decimal(G), Decimal(16 * G), Decimal(100 * G), Decimal(500 * G)]),
        st.sampled_from(gpu),
    )  # fmt: skip


# An operation: ("alloc", request) or ("release", index into the live kernels).
def operations(cuda: str) -> st.SearchStrategy[list[tuple[str, Any]]]:
    alloc = st.tuples(st.just("alloc"), requests(cuda))
    release = st.tuples(st.just("release"), st.integers(min_value=0, max_value=50))
    return st.lists(st.one_of(alloc, alloc, release), min_size=1, max_size=25)


def check_invariants(allocator: Allocator) -> None:
    held: dict[tuple[str, str], Decimal] = {}
    for allocation in allocator.live().values():
        for key, amount in allocation.amounts():
            assert amount > 0
            spec = allocator.specs[key[0]]
            if spec.mode != SlotMode.DIVISIBLE:
                assert amount <= 1, f"{key} given {amount} to one kernel"
            if spec.mode == SlotMode.WHOLE:
                assert amount == 1, f"{key} given in part"
            held[key] = held.get(key, Decimal(0)) + amount
    for unit in allocator.units:
        taken = held.get((unit.slot, unit.id), Decimal(0))
        assert taken <= unit.capacity, (
            f"{unit.slot} {unit.id}: {taken} of {unit.capacity} handed out"
        )
        assert allocator.free()[(unit.slot, unit.id)] == unit.capacity - taken
    assert allocator.occupied() + ResourceSlots(
        {s: sum((v for (slot, _), v in allocator.free().items() if slot == s), Decimal(0)) for s in allocator.specs}
    ) == allocator.capacity()  # fmt: skip


def rebuilt(allocator: Allocator, config: AgentConfig) -> Allocator:
    """A fresh allocator fed the recorded allocations, as after an agent restart."""
    twin = Allocator(allocator.topology, load_device_plugins(), config)
    twin.rebuild(
        KernelInfo(
            kernel_id=kid,
            session_id="s",
            image="i",
            state="running",
            slots=a.slots(),
            backend_id=kid,
            created_at=time.time(),
            allocation=Allocation.from_json(a.to_json()),
        )
        for kid, a in allocator.live().items()
    )
    return twin


@pytest.mark.parametrize(("machine", "policy", "cuda"), MODES)
def test_random_sequences(
    machine: str, policy: str, cuda: str, topologies: dict[str, Topology]
) -> None:
    config = AgentConfig(reserved_mem="0", allocation_policy=policy, cuda_slot=cuda)  # type: ignore[arg-type]

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(operations(cuda))
    def run(ops: list[tuple[str, Any]]) -> None:
        allocator = Allocator(topologies[machine], load_device_plugins(), config)
        capacity_free = allocator.free()
        serial = 0
        for op, arg in ops:
            before = allocator.free()
            if op == "alloc":
                serial += 1
                kid = f"k{serial}"
                try:
                    got = allocator.allocate(kid, arg)
                except InsufficientResources:
                    assert allocator.free() == before
                    assert kid not in allocator.live()
                    continue
                assert got.slots() == arg
                # An allocate-release pair leaves no trace; the same request then gets the
                # same units again (the policies are deterministic).
                after = allocator.free()
                allocator.release(kid)
                assert allocator.free() == before
                assert allocator.allocate(kid, arg) == got
                assert allocator.free() == after
            else:
                live = sorted(allocator.live())
                if not live:
                    continue
                released = allocator.release(live[arg % len(live)])
                assert released is not None
            check_invariants(allocator)
        assert rebuilt(allocator, config).free() == allocator.free()
        for kid in list(allocator.live()):
            allocator.release(kid)
        assert allocator.free() == capacity_free

    run()


@pytest.mark.parametrize("machine", ["server", "epyc", "workstation", "vm"])
def test_allocate_then_release_restores_the_exact_free_set(
    machine: str, topologies: dict[str, Topology]
) -> None:
    @settings(max_examples=40, deadline=None)
    @given(st.lists(requests("cuda.device"), min_size=1, max_size=12), st.data())
    def run(reqs: list[ResourceSlots], data: st.DataObject) -> None:
        allocator = Allocator(
            topologies[machine], load_device_plugins(), AgentConfig(reserved_mem="0")
        )
        history = []
        for i, r in enumerate(reqs):
            before = allocator.free()
            try:
                allocator.allocate(f"k{i}", r)
            except InsufficientResources:
                continue
            history.append((f"k{i}", before))
        # Release in reverse order: each release restores the set from before its allocation.
        for kid, before in reversed(history):
            allocator.release(kid)
            assert allocator.free() == before
        # Release in any order: the free set depends only on what is still held.
        for i, r in enumerate(reqs):
            with contextlib.suppress(InsufficientResources):
                allocator.allocate(f"k{i}", r)
        order = data.draw(st.permutations(sorted(allocator.live())))
        for kid in order:
            allocator.release(kid)
            check_invariants(allocator)
        assert all(
            v == u.capacity
            for u in allocator.units
            for k, v in allocator.free().items()
            if k == (u.slot, u.id)
        )

    run()
