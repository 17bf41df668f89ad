"""Allocation policies: which units a kernel's request takes.  Pure.

Order of placement: *anchor* slots first (devices such as ``cuda.device``),
then CPUs (SHARES slots), then memory (DIVISIBLE slots), each following the
NUMA nodes chosen before it.

* Devices: the whole units come from the tightest group of the PCIe tree that
  holds enough free ones (same switch, else same root port, same node, same
  socket, anywhere); among equally tight groups, one whose node can also hold
  the CPUs and memory, then the one with the fewest free units (best fit).
* ``prefer-single-node``: CPUs on the devices' node, or without devices on
  the one node that fits CPUs and memory (the fullest that fits); spilling to
  the nearest nodes (SLIT distance) only when one node is not enough.  Inside a
  node, whole free cores before half-used ones.  Memory on the CPUs' nodes.
* ``interleaved``: CPUs round-robin over every node, memory split evenly over
  every node (for bandwidth-bound work); devices as above.

A fractional amount of a SHARES slot (``cpu=0.5``) is a share of one unit:
the unit nearest the rest of the allocation with the tightest fit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import ROUND_FLOOR, Decimal

from ..errors import InsufficientResources
from ..sched.slots import ResourceSlots
from .allocation import Allocation, FreeMap
from .locality import Distance, device_key, key_distance, node_span
from .topology import DeviceKind, PCIDevice, Topology
from .units import SlotMode, SlotSpec, Unit, split_exact

__all__ = ["POLICIES", "allocate"]

POLICIES = ("prefer-single-node", "interleaved")
Key = tuple[str, ...]
ONE = Decimal(1)


class _Plan:
    """The working state of one allocation: what is taken so far, and what is left."""

    def __init__(self, units: Sequence[Unit], free: FreeMap) -> None:
        self.units = units
        self.free = dict(free)
        self.parts: dict[str, dict[str, Decimal]] = {}

    def left(self, u: Unit) -> Decimal:
        return self.free.get((u.slot, u.id), Decimal(0))

    def take(self, u: Unit, amount: Decimal) -> None:
        part = self.parts.setdefault(u.slot, {})
        part[u.id] = part.get(u.id, Decimal(0)) + amount
        self.free[(u.slot, u.id)] = self.left(u) - amount

    def taken(self, slot: str) -> list[Unit]:
        ids = self.parts.get(slot, {})
        return [u for u in self.units if u.slot == slot and u.id in ids]

    def nodes(self) -> list[int]:
        """Nodes holding taken units, most units first."""
        count: dict[int, int] = {}
        for slot in self.parts:
            for u in self.taken(slot):
                count[u.node] = count.get(u.node, 0) + 1
        return sorted((n for n in count if n >= 0), key=lambda n: (-count[n], n))


def _pick(cands: Sequence[Unit], n: int, prefer: frozenset[int]) -> list[Unit]:
    """*n* of *cands* from the tightest locality group that has that many (best fit)."""
    if n <= 0:
        return []
    groups: dict[Key, list[Unit]] = {}
    for u in cands:
        for depth in range(1, len(u.key)):
            groups.setdefault(u.key[:depth], []).append(u)
    best: tuple[int, int, int, Key] | None = None
    for prefix, members in groups.items():
        if len(members) >= n:
            homed = 0 if prefer and all(m.node in prefer for m in members) else 1
            rank = (-len(prefix), homed, len(members), prefix)
            best = rank if best is None or rank < best else best
    if best is None:
        return _fill(list(cands), n, 0)
    return _fill(groups[best[3]], n, len(best[3]))


def _fill(members: list[Unit], n: int, depth: int) -> list[Unit]:
    """*n* of *members* keeping sub-groups whole: largest first, the rest best-fit."""
    if n >= len(members):
        return members
    children: dict[Key, list[Unit]] = {}
    for u in members:
        children.setdefault(u.key[: depth + 1], []).append(u)
    order = sorted(children.values(), key=lambda c: (-len(c), c[0].key))
    chosen: list[Unit] = []
    while n > 0:
        fits = [c for c in order if len(c) >= n]
        if fits:
            return chosen + _fill(min(fits, key=lambda c: (len(c), c[0].key)), n, depth + 1)
        group = order.pop(0)
        chosen += group
        n -= len(group)
    return chosen


class _Allocator:
    def __init__(
        self,
        request: ResourceSlots,
        units: Sequence[Unit],
        specs: Mapping[str, SlotSpec],
        free: FreeMap,
        topology: Topology,
        policy: str,
    ) -> None:
        self.request = request
        self.specs = specs
        self.topology = topology
        self.policy = policy
        self.by_slot: dict[str, list[Unit]] = {}
        for u in units:
            self.by_slot.setdefault(u.slot, []).append(u)
        self.plan = _Plan(units, free)
        self.node_ids = [n.id for n in topology.nodes]

    def fail(self, slot: str, why: str) -> InsufficientResources:
        wanted = ResourceSlots({slot: self.request[slot]}).human()
        return InsufficientResources(f"cannot allocate {wanted} (policy {self.policy}): {why}")

    def node_distance(self, a: int, b: int) -> int:
        node = self.topology.node(a)
        slit = node.distances.get(b) if node is not None else None
        if slit is not None:
            return slit
        return {Distance.SAME_NODE: 10, Distance.SAME_SOCKET: 20}.get(
            node_span([a, b], self.topology), 30
        )

    def by_nearness(self, start: Sequence[int], nodes: Iterable[int]) -> list[int]:
        """*start* first (in its order), then the other nodes nearest to it."""
        rest = [n for n in nodes if n not in start]
        if not start:
            return rest
        rest.sort(key=lambda n: (min(self.node_distance(s, n) for s in start), n))
        return [*start, *rest]

    def node_free(self, slot: str, node: int) -> Decimal:
        return sum(
            (max(self.plan.left(u), Decimal(0)) for u in self.by_slot[slot] if u.node == node),
            Decimal(0),
        )

    def fitting_nodes(self, slots: Iterable[str]) -> list[int]:
        """Nodes that alone can hold the *slots* requested, fullest first (best fit)."""
        wanted = [s for s in slots if s in self.by_slot]
        fit = [
            n for n in self.node_ids if all(self.node_free(s, n) >= self.request[s] for s in wanted)
        ]
        return sorted(fit, key=lambda n: ([self.node_free(s, n) for s in wanted], n))

    # -- discrete slots (WHOLE, SHARES) -----------------------------------------

    def whole_units(self, slot: str, n: int, order: list[int], prefer: frozenset[int]) -> None:
        able = [u for u in self.by_slot[slot] if self.plan.left(u) >= ONE]
        if len(able) < n:
            raise self.fail(slot, f"{len(able)} whole units free, {n} needed")
        spec = self.specs[slot]
        if spec.anchor or not order:
            picked = _pick(able, n, prefer)
        elif self.policy == "interleaved":
            picked = self.round_robin(able, n, order)
        else:
            picked = []
            for node in order:
                here = [u for u in able if u.node == node]
                picked += _pick(here, min(n - len(picked), len(here)), prefer)
                if len(picked) == n:
                    break
            if len(picked) < n:  # units on an unknown node
                rest = [u for u in able if u not in picked]
                picked += _pick(rest, n - len(picked), prefer)
        for u in picked:
            self.plan.take(u, ONE)

    def round_robin(self, able: list[Unit], n: int, order: list[int]) -> list[Unit]:
        counts = dict.fromkeys(order, 0)
        avail = {node: sum(1 for u in able if u.node == node) for node in order}
        given = 0
        while given < n and any(counts[x] < avail[x] for x in order):
            for node in order:
                if given < n and counts[node] < avail[node]:
                    counts[node] += 1
                    given += 1
        picked: list[Unit] = []
        for node in order:
            picked += _pick([u for u in able if u.node == node], counts[node], frozenset())
        if len(picked) < n:
            picked += _pick([u for u in able if u not in picked], n - len(picked), frozenset())
        return picked

    def share(self, slot: str, amount: Decimal, prefer: frozenset[int]) -> None:
        held = self.plan.parts.get(slot, {})
        near = [u.key for s in self.plan.parts for u in self.plan.taken(s)]
        options = [
            u for u in self.by_slot[slot] if u.id not in held and self.plan.left(u) >= amount
        ]
        if not options:
            raise self.fail(slot, f"no unit has a share of {amount.normalize():f} free")
        best = min(
            options,
            key=lambda u: (
                key_distance([*near, u.key]) if near else 0,
                0 if u.node in prefer else 1,
                self.plan.left(u),
                u.key,
            ),
        )
        self.plan.take(best, amount)

    def discrete(self, slot: str, order: list[int], prefer: frozenset[int]) -> None:
        amount = self.request[slot]
        whole = int(amount.to_integral_value(rounding=ROUND_FLOOR))
        if self.specs[slot].mode == SlotMode.WHOLE and whole != amount:
            raise self.fail(slot, "this slot is handed out in whole units only")
        self.whole_units(slot, whole, order, prefer)
        if amount > whole:
            self.share(slot, amount - whole, prefer)

    # -- divisible slots ----------------------------------------------------------

    def divisible(self, slot: str, order: list[int]) -> None:
        units = {u.node: u for u in self.by_slot[slot]}
        remaining = self.request[slot]
        if self.policy == "interleaved":
            nodes = [n for n in order if n in units and self.plan.left(units[n]) > 0]
            while remaining > 0 and nodes:
                quantum = ONE if remaining == remaining.to_integral_value() else Decimal("0.001")
                shares = split_exact(remaining, [1] * len(nodes), quantum=quantum)
                for node, share in zip(list(nodes), shares, strict=True):
                    got = min(share, self.plan.left(units[node]))
                    if got > 0:
                        self.plan.take(units[node], got)
                        remaining -= got
                    if self.plan.left(units[node]) <= 0:
                        nodes.remove(node)
        else:
            for node in order:
                u = units.get(node)
                if u is None or remaining <= 0:
                    continue
                got = min(remaining, self.plan.left(u))
                if got > 0:
                    self.plan.take(u, got)
                    remaining -= got
        if remaining > 0:
            short = ResourceSlots({slot: remaining}).human().partition("=")[2]
            raise self.fail(slot, f"{short} more than the nodes have free")

    # -- the whole request --------------------------------------------------------

    def run(self) -> Allocation:
        wanted = [s for s in sorted(self.request) if self.request[s] > 0]
        for slot in wanted:
            if slot not in self.specs or slot not in self.by_slot:
                offered = ", ".join(sorted(self.by_slot)) or "nothing"
                raise self.fail(slot, f"this agent offers no {slot!r} (it offers {offered})")
            total = sum(
                (max(self.plan.left(u), Decimal(0)) for u in self.by_slot[slot]), Decimal(0)
            )
            if total < self.request[slot]:
                free = ResourceSlots({slot: total}).human().partition("=")[2] or "0"
                raise self.fail(slot, f"only {free} free on this agent")
        anchors = [s for s in wanted if self.specs[s].anchor]
        others = [s for s in wanted if not self.specs[s].anchor]
        fitting = frozenset(self.fitting_nodes(others))
        for slot in anchors:
            if self.specs[slot].mode == SlotMode.DIVISIBLE:
                self.divisible(slot, self.node_ids)
            else:
                self.discrete(slot, [], fitting)
        if self.policy == "interleaved":
            home: list[int] = list(self.node_ids)
        elif anchors:
            home = self.plan.nodes()
        else:
            fits = self.fitting_nodes(others)
            home = fits[:1]
        for slot in [s for s in others if self.specs[s].mode != SlotMode.DIVISIBLE]:
            if home:
                order = self.by_nearness(home, self.node_ids)
            else:  # nothing fits one node: start where most is free
                first = max(self.node_ids, key=lambda n: (self.node_free(slot, n), -n))
                order = self.by_nearness([first], self.node_ids)
            self.discrete(slot, order, frozenset(order[:1]))
            home = home or self.plan.nodes()[:1]
        for slot in [s for s in others if self.specs[s].mode == SlotMode.DIVISIBLE]:
            start = self.node_ids if self.policy == "interleaved" else self.plan.nodes() or home
            self.divisible(slot, self.by_nearness(start, self.node_ids))
        return self.result(anchors)

    def result(self, anchors: list[str]) -> Allocation:
        touched = sorted(
            {u.node for s in self.plan.parts for u in self.plan.taken(s)},
        )
        distances = {"numa": int(node_span(touched, self.topology))}
        anchor_keys: list[Key] = []
        for slot in anchors:
            keys = [u.key for u in self.plan.taken(slot)]
            distances[slot] = int(key_distance(keys))
            anchor_keys += keys
        return Allocation(
            policy=self.policy,
            parts=self.plan.parts,
            nodes=tuple(n for n in touched if n >= 0),
            distances=distances,
            nic=self.nearest_nic(anchor_keys, touched),
        )

    def nearest_nic(self, anchor_keys: list[Key], nodes: list[int]) -> str:
        nics = self.topology.of_kind(DeviceKind.NIC)
        if not nics:
            return ""

        def rank(nic: PCIDevice) -> tuple[int, int, int, str]:
            dist: int
            if anchor_keys:
                nic_key = device_key(nic, self.topology)
                dist = max(key_distance([k, nic_key]) for k in anchor_keys)
            else:
                dist = node_span([*nodes, nic.node], self.topology)
            return (dist, 0 if nic.subkind == "infiniband" else 1, -nic.link_width, nic.address)

        return min(nics, key=rank).address


def allocate(
    request: ResourceSlots,
    units: Sequence[Unit],
    specs: Mapping[str, SlotSpec],
    free: FreeMap,
    topology: Topology,
    policy: str = "prefer-single-node",
) -> Allocation:
    """The units *request* takes, from what *free* says is left; InsufficientResources if none."""
    if policy not in POLICIES:
        raise ValueError(f"unknown allocation policy {policy!r}; known: {', '.join(POLICIES)}")
    return _Allocator(request, units, specs, free, topology, policy).run()
