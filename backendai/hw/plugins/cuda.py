"""NVIDIA GPUs: ``cuda.device`` (whole GPUs) or ``cuda.shares`` (fractions).

The GPUs are the NVIDIA display and accelerator functions sysfs lists; their
identity is the PCI address, and their index the one the driver gives them
(``nvidia-smi``, ``NVIDIA_VISIBLE_DEVICES``): their rank in PCI address order.
``agent.cuda_slot`` picks the slot: ``cuda.device`` hands out whole GPUs,
``cuda.shares`` fractions of one (shares are bookkeeping only: kernels that
share a GPU see all of it).  A container gets a Docker device request for its
GPUs and ``NVIDIA_VISIBLE_DEVICES``; with GPUs and an InfiniBand NIC nearest to
them, ``NCCL_IB_HCA`` names that NIC.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from ...config import AgentConfig
from ..allocation import Allocation
from ..locality import device_key
from ..plugin import ContainerResources, DeviceRequest
from ..topology import DeviceKind, PCIDevice, Topology
from ..units import SlotMode, SlotSpec, Unit

__all__ = ["CUDAPlugin", "nvidia_gpus"]

SLOTS = ("cuda.device", "cuda.shares")


def nvidia_gpus(topology: Topology) -> list[PCIDevice]:
    """NVIDIA GPUs in driver index order (PCI address order)."""
    return sorted(
        (d for d in topology.of_kind(DeviceKind.GPU) if d.vendor == "nvidia"),
        key=lambda d: d.address,
    )


class CUDAPlugin:
    name = "cuda"

    def slots(self, config: AgentConfig) -> Sequence[SlotSpec]:
        mode = SlotMode.WHOLE if config.cuda_slot == "cuda.device" else SlotMode.SHARES
        return (SlotSpec(config.cuda_slot, mode, anchor=True),)

    def units(self, topology: Topology, config: AgentConfig) -> Sequence[Unit]:
        return tuple(
            Unit(config.cuda_slot, d.address, d.node, device_key(d, topology), Decimal(1))
            for d in nvidia_gpus(topology)
        )

    def container(self, allocation: Allocation, topology: Topology) -> ContainerResources:
        held = {a for slot in SLOTS for a in allocation.unit_ids(slot)}
        if not held:
            return ContainerResources()
        index = {d.address: str(i) for i, d in enumerate(nvidia_gpus(topology))}
        ids = tuple(index[a] for a in sorted(held) if a in index)
        environ = {"NVIDIA_VISIBLE_DEVICES": ",".join(ids)}
        nic = next((d for d in topology.devices if d.address == allocation.nic), None)
        if nic is not None and nic.subkind == "infiniband" and nic.names:
            environ["NCCL_IB_HCA"] = nic.names[0]
        return ContainerResources(
            device_requests=(DeviceRequest("nvidia", ids, ("gpu",)),), environ=environ
        )
