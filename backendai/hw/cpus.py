"""CPUs and NUMA nodes from ``/sys/devices/system/{cpu,node,memory}``.

* Online CPUs come from ``cpu/online`` (else each ``cpuN/online``, ``cpu0``
  often having none); offline ones are listed but never offered.
* Each CPU's core, socket and hardware-thread siblings come from
  ``cpuN/topology``; a missing file gives a safe default (its own core, socket
  -1, no siblings).
* Nodes come from ``node/nodeN`` (``cpulist``, ``meminfo``, ``distance``).  A
  kernel without NUMA has no ``node`` directory: one node 0 is assumed, holding
  every online CPU and the online memory blocks of ``memory/``.
"""

from __future__ import annotations

import re
from collections import Counter

from .sysfs import SysfsReader
from .topology import CPU, NumaNode

__all__ = ["read_cpus_and_nodes"]

CPU_DIR = "devices/system/cpu"
NODE_DIR = "devices/system/node"
MEMORY_DIR = "devices/system/memory"
_MEMTOTAL_RE = re.compile(r"^Node\s+\d+\s+MemTotal:\s+(\d+)\s*kB", re.MULTILINE)


def _cpu_ids(r: SysfsReader) -> list[int]:
    return sorted(int(n[3:]) for n in r.entries(CPU_DIR, "cpu") if n[3:].isdigit())


def _online_cpus(r: SysfsReader) -> tuple[frozenset[int], frozenset[int]]:
    """(online, offline) logical CPU ids."""
    present = set(_cpu_ids(r))
    listed = r.cpulist(f"{CPU_DIR}/online")
    if listed is not None:
        online = set(listed) & present if present else set(listed)
    else:
        # No summary file: a CPU is online unless its own ``online`` says 0.
        online = {c for c in present if r.integer(f"{CPU_DIR}/cpu{c}/online") != 0}
    offline = (present | set(r.cpulist(f"{CPU_DIR}/offline") or ())) - online
    if not online:
        r.warn(f"/sys/{CPU_DIR}: no online CPU found; assuming cpu0")
        online = {0}
    return frozenset(online), frozenset(offline)


def _node_ids(r: SysfsReader) -> list[int]:
    return sorted(int(n[4:]) for n in r.entries(NODE_DIR, "node") if n[4:].isdigit())


def _node_mem(r: SysfsReader, node: int) -> int:
    raw = r.text(f"{NODE_DIR}/node{node}/meminfo")
    m = _MEMTOTAL_RE.search(raw or "")
    if m is None:
        if raw is not None:
            r.warn(f"/sys/{NODE_DIR}/node{node}/meminfo: no MemTotal line; node memory taken as 0")
        return 0
    return int(m.group(1)) * 1024


def _node_distances(r: SysfsReader, node: int, ids: list[int]) -> dict[int, int]:
    raw = r.text(f"{NODE_DIR}/node{node}/distance")
    if raw is None:
        return {}
    try:
        values = [int(v) for v in raw.split()]
    except ValueError:
        values = []
    if len(values) != len(ids):  # one value per online node, in node order
        r.warn(
            f"/sys/{NODE_DIR}/node{node}/distance: {raw!r} does not give one distance per "
            f"node {ids}; ignored"
        )
        return {}
    return dict(zip(ids, values, strict=True))


def _blocks_memory(r: SysfsReader) -> int:
    """Bytes of online memory blocks (the only sysfs view of memory without NUMA)."""
    size = r.integer(f"{MEMORY_DIR}/block_size_bytes", base=16)
    if size is None:
        r.warn(f"/sys/{MEMORY_DIR}/block_size_bytes: missing; memory size unknown here")
        return 0
    blocks = 0
    for name in r.entries(MEMORY_DIR, "memory"):
        if not name[6:].isdigit():
            continue
        state = r.text(f"{MEMORY_DIR}/{name}/state")
        if state == "online" or (state is None and r.integer(f"{MEMORY_DIR}/{name}/online") == 1):
            blocks += 1
    return blocks * size


def _read_cpu(r: SysfsReader, cpu: int, node: int, online: frozenset[int]) -> CPU:
    base = f"{CPU_DIR}/cpu{cpu}/topology"
    core = r.integer(f"{base}/core_id")
    socket = r.integer(f"{base}/physical_package_id")
    siblings = r.cpulist(f"{base}/thread_siblings_list")
    if siblings is None:
        siblings = r.cpulist(f"{base}/core_cpus_list")
    return CPU(
        id=cpu,
        core=cpu if core is None else core,
        socket=-1 if socket is None else socket,
        node=node,
        siblings=(siblings or frozenset({cpu})) & online | {cpu},
    )


def read_cpus_and_nodes(
    r: SysfsReader,
) -> tuple[tuple[CPU, ...], tuple[NumaNode, ...], frozenset[int], bool]:
    """(online CPUs, nodes, offline CPU ids, whether the kernel shows NUMA)."""
    online, offline = _online_cpus(r)
    ids = _node_ids(r)
    numa = bool(ids)
    node_cpus: dict[int, frozenset[int]] = {}
    if numa:
        for n in ids:
            node_cpus[n] = (r.cpulist(f"{NODE_DIR}/node{n}/cpulist") or frozenset()) & online
        homeless = online - frozenset().union(*node_cpus.values())
        if homeless:
            r.warn(
                f"/sys/{NODE_DIR}: CPUs {sorted(homeless)} are on no node; counted on node {ids[0]}"
            )
            node_cpus[ids[0]] = node_cpus[ids[0]] | homeless
    else:
        node_cpus[0] = online
    node_of = {c: n for n, cs in node_cpus.items() for c in cs}
    cpus = tuple(_read_cpu(r, c, node_of[c], online) for c in sorted(online))
    socket_of_cpu = {c.id: c.socket for c in cpus}
    nodes = []
    for n, cs in sorted(node_cpus.items()):
        sockets = Counter(socket_of_cpu[c] for c in cs)
        nodes.append(
            NumaNode(
                id=n,
                cpus=cs,
                mem_total=_node_mem(r, n) if numa else _blocks_memory(r),
                socket=sockets.most_common(1)[0][0] if sockets else -1,
                distances=_node_distances(r, n, ids) if numa else {0: 10},
            )
        )
    return cpus, tuple(nodes), offline, numa
