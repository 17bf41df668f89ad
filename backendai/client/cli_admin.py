"""``backendai admin ...``: operator commands (superadmin keypair).

``add_admin_commands`` creates the ``admin`` group and returns its subparsers, so
more groups plug in beside ``agent`` (``add_x_admin_commands(add_admin_commands(sub))``).

* ``admin agent list [--status S] [--json]``: agents, their capacity and occupancy.
* ``admin agent info AGENT [--json]``: one agent: NUMA nodes, PCI devices with their
  PCIe paths, and its kernels with the CPUs, memory nodes and GPUs they are pinned to.

Thin: parse, call the manager's ``/resource/agents`` routes, print.  Exit codes as
for ``backendai session``: 1 the manager refused, 69 unreachable, 78 bad configuration.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import quote

from ..hw.cpulist import format_cpulist
from ..sched.slots import ResourceSlots, format_bytes
from .api import APIClient
from .cli_accounts import add_account_admin_commands
from .cli_admin_groups import add_group_admin_commands
from .cli_admin_images import add_image_admin_commands
from .cli_session import run_session_command
from .output import format_kv, format_table, out

__all__ = ["add_admin_commands"]

Handler = Callable[[APIClient, argparse.Namespace], Awaitable[int]]


def _dump(value: Any) -> None:
    out(json.dumps(value, indent=2, default=str))


def _used(agent: Mapping[str, Any], slot: str) -> str:
    """``occupied/capacity`` of one slot, human units; ``-`` where the agent has none."""
    cap = ResourceSlots.from_json(agent.get("capacity") or {})
    occ = ResourceSlots.from_json(agent.get("occupied") or {})
    if slot not in cap and slot not in occ:
        return "-"
    if slot == "mem":
        return f"{format_bytes(occ[slot])}/{format_bytes(cap[slot])}"
    return f"{occ[slot].normalize():f}/{cap[slot].normalize():f}"


def _gpu_slot(agent: Mapping[str, Any]) -> str:
    cap = agent.get("capacity") or {}
    return next((s for s in ("cuda.device", "cuda.shares", "rocm.device") if s in cap), "")


async def _agent_list(api: APIClient, args: argparse.Namespace) -> int:
    params = {"status": args.status} if args.status else None
    agents = (await api.request("GET", "/resource/agents", params=params)).json()["agents"]
    if args.json:
        _dump(agents)
        return 0
    if not agents:
        out("No agents.")
        return 0
    headers = ["ID", "STATUS", "GROUP", "BACKEND", "CPU", "MEM", "GPU", "NODES", "LAST HEARTBEAT"]
    rows = []
    for a in agents:
        topo = a.get("topology") or {}
        gpu = _gpu_slot(a)
        rows.append(
            [
                a["id"],
                a["status"],
                a["resource_group"],
                a["backend"],
                _used(a, "cpu"),
                _used(a, "mem"),
                f"{_used(a, gpu)} {gpu}" if gpu else "-",
                len(topo.get("nodes") or []) or None,
                a["last_heartbeat"],
            ]
        )
    out(format_table(headers, rows))
    return 0


def _placement(alloc: Mapping[str, Any] | None) -> list[str]:
    """CPUS, MEM NODES, DEVICES columns of a kernel from its recorded allocation."""
    if not alloc:
        return ["-", "-", "-"]
    parts: Mapping[str, Mapping[str, str]] = alloc.get("parts") or {}
    cpus = sorted(int(c) for c in parts.get("cpu", {}))
    devices = [u for s, p in parts.items() if s not in ("cpu", "mem") for u in p]
    return [
        format_cpulist(cpus) or "-",
        ",".join(sorted(parts.get("mem", {}))) or "-",
        ",".join(sorted(devices)) or "-",
    ]


async def _agent_info(api: APIClient, args: argparse.Namespace) -> int:
    info = (await api.request("GET", f"/resource/agents/{quote(args.agent, safe='')}")).json()
    if args.json:
        _dump(info)
        return 0
    topo = info.get("topology") or {}
    human = {
        k: ResourceSlots.from_json(info.get(k) or {}).human()
        for k in ("capacity", "occupied", "free")
    }
    out(
        format_kv(
            {
                "id": info["id"],
                "status": info["status"],
                "resource group": info["resource_group"],
                "address": info["rpc_addr"],
                "backend": f"{info['backend']} ({info['architecture']}, version {info['version']})",
                **human,
                "last heartbeat": info["last_heartbeat"],
                "sockets": topo.get("sockets"),
                "cores": topo.get("cores"),
                "online cpus": topo.get("cpus"),
                "offline cpus": topo.get("offline_cpus"),
                "memory": format_bytes(topo["mem"]) if topo.get("mem") else None,
                "numa": "yes" if topo.get("numa") else ("no (one node assumed)" if topo else None),
                "policy": topo.get("allocation_policy"),
            }
        )
    )
    if topo.get("nodes"):
        out("\nNUMA nodes:")
        rows = [
            [
                n["id"],
                n["socket"],
                n["cpus"],
                format_bytes(n["mem"]),
                " ".join(map(str, n["distances"])),
            ]
            for n in topo["nodes"]
        ]
        out(format_table(["NODE", "SOCKET", "CPUS", "MEM", "DISTANCES"], rows))
    if topo.get("devices"):
        out("\nDevices:")
        rows = [
            [d["address"], f"{d['kind']} {d['subkind']}".strip(), d["vendor"], d["node"],
             d["link"], " > ".join(d["path"]), ",".join(d["names"])]
            for d in topo["devices"]
        ]  # fmt: skip
        out(format_table(["ADDRESS", "KIND", "VENDOR", "NODE", "LINK", "PCIE PATH", "NAMES"], rows))
    kernels = info.get("kernels") or []
    if kernels:
        out("\nKernels:")
        placed = topo.get("allocations") or {}
        rows = [
            [k["kernel_id"], k["status"], ResourceSlots.from_json(k["slots"]).human(),
             *_placement(placed.get(k["kernel_id"]))]
            for k in kernels
        ]  # fmt: skip
        out(format_table(["KERNEL", "STATUS", "SLOTS", "CPUS", "MEM NODES", "DEVICES"], rows))
    for warning in topo.get("warnings") or []:
        out(f"warning: {warning}")
    return 0


def add_admin_commands(
    subparsers: argparse._SubParsersAction[Any],
) -> argparse._SubParsersAction[Any]:
    """Add ``admin`` and its ``agent`` group; return the admin group's subparsers."""
    admin = subparsers.add_parser("admin", help="operate the cluster (superadmin)")
    groups: argparse._SubParsersAction[Any] = admin.add_subparsers(
        dest="admin_command", metavar="GROUP", required=True
    )
    agent = groups.add_parser("agent", help="agents and their hardware", description="agents")
    commands = agent.add_subparsers(dest="admin_agent_command", metavar="COMMAND", required=True)

    def command(name: str, handler: Handler, help: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = commands.add_parser(name, help=help, description=help)
        parser.set_defaults(func=run_session_command, handler=handler)
        parser.add_argument("--json", action="store_true", help="print the manager's answer")
        return parser

    p = command("list", _agent_list, "list agents with their capacity and occupancy")
    p.add_argument("--status", help="only these statuses, e.g. ALIVE or ALIVE,LOST")
    p = command("info", _agent_info, "show one agent: topology, devices, pinned kernels")
    p.add_argument("agent", metavar="AGENT", help="agent id")
    add_image_admin_commands(groups)  # registry, image (issue 9)
    add_group_admin_commands(groups)  # resource-group (issue 5)
    add_account_admin_commands(groups)  # domain, project, user, keypair, policy (issue 4)
    return groups
