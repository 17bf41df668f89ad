"""How far apart allocated things are: same PCIe switch < same root port < same
NUMA node < same socket < across sockets.

Every allocatable unit has a *locality key*: ``("s000", "n001", <groups>..., <id>)``
— its socket, its NUMA node, then finer groups (a CPU's core; a PCI device's
root port and switch ports), then itself.  Two units are as close as the
longest prefix their keys share; a set of units is as close as the prefix all
of them share.  Pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import IntEnum

from .topology import PCIDevice, Topology

__all__ = [
    "Distance",
    "cpu_key",
    "device_key",
    "key_distance",
    "node_key",
    "node_span",
]

Key = tuple[str, ...]


class Distance(IntEnum):
    SAME_DEVICE = 0
    SAME_SWITCH = 1  # share a bridge below the root port
    SAME_ROOT_PORT = 2
    SAME_NODE = 3
    SAME_SOCKET = 4
    CROSS_SOCKET = 5


def node_key(socket: int, node: int) -> Key:
    if node < 0:
        return ("s?", "n?")
    return (f"s{socket:03d}", f"n{node:03d}")  # padded: keys sort in numeric order


def device_key(device: PCIDevice, topology: Topology) -> Key:
    """Socket, node, root port, switch ports, address."""
    return (*node_key(topology.socket_of(device.node), device.node), *device.path, device.address)


def cpu_key(socket: int, node: int, core: int, cpu: int) -> Key:
    return (*node_key(socket, node), f"core{core:05d}", f"cpu{cpu:05d}")


def _common_depth(keys: Sequence[Key]) -> int:
    depth = 0
    shortest = min(len(k) for k in keys)
    while depth < shortest and all(k[depth] == keys[0][depth] for k in keys):
        depth += 1
    return depth


def key_distance(keys: Iterable[Key]) -> Distance:
    """The distance of a set of units: the level of the deepest group holding them all."""
    ks = list(dict.fromkeys(keys))
    if len(ks) <= 1:
        return Distance.SAME_DEVICE
    if any(k[1] == "n?" for k in ks):
        return Distance.CROSS_SOCKET  # a unit on an unknown node: assume the worst
    depth = _common_depth(ks)
    if depth == 0:
        return Distance.CROSS_SOCKET
    if depth == 1:
        return Distance.SAME_SOCKET
    if depth == 2:
        return Distance.SAME_NODE
    if depth == 3:
        return Distance.SAME_ROOT_PORT
    return Distance.SAME_SWITCH


def node_span(nodes: Iterable[int], topology: Topology) -> Distance:
    """SAME_NODE for one node, SAME_SOCKET when all share a socket, else CROSS_SOCKET."""
    distinct = sorted(set(nodes))
    if len(distinct) <= 1:
        return Distance.SAME_NODE
    sockets = {topology.socket_of(n) for n in distinct}
    if len(sockets) == 1 and -1 not in sockets:
        return Distance.SAME_SOCKET
    return Distance.CROSS_SOCKET
