"""What a node offers to kernels: CPU cores and memory.

``node_capacity`` is pure (configured values win over detected ones, and the
reserved memory is kept back); ``detect_capacity`` reads the host through
psutil in a worker thread and applies it.
"""

from __future__ import annotations

import os
from decimal import Decimal

import psutil
import trio

from ..config import AgentConfig
from ..errors import ConfigError, InvalidAPIParameters
from ..sched.slots import ResourceSlots, parse_bytes

__all__ = ["detect_capacity", "node_capacity", "total_memory"]


def total_memory() -> int:
    """Physical memory of this host in bytes (blocking: reads /proc)."""
    return int(psutil.virtual_memory().total)


def _config_bytes(value: str, key: str) -> Decimal:
    try:
        return parse_bytes(value, where=f"agent.{key}")
    except InvalidAPIParameters as e:
        raise ConfigError(str(e)) from None


def node_capacity(config: AgentConfig, *, cpu_count: int, total_mem: int) -> ResourceSlots:
    """``agent.cpu`` / ``agent.mem`` where set, else what was detected.

    Detected memory is reduced by ``agent.reserved_mem``, kept back for the host.
    """
    cpu = Decimal(str(config.cpu)) if config.cpu > 0 else Decimal(cpu_count)
    if config.mem:
        mem = _config_bytes(config.mem, "mem")
    else:
        mem = max(
            Decimal(total_mem) - _config_bytes(config.reserved_mem, "reserved_mem"), Decimal(0)
        )
    return ResourceSlots({"cpu": cpu, "mem": mem})


def _usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask), else every CPU."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


async def detect_capacity(config: AgentConfig) -> ResourceSlots:
    """The capacity of this host, as :func:`node_capacity` computes it."""
    total_mem = await trio.to_thread.run_sync(total_memory)
    return node_capacity(config, cpu_count=_usable_cpus(), total_mem=total_mem)
