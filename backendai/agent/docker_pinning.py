"""A kernel's allocation in Docker terms: cpusets, device requests, and its label.

Part of the Docker adapter (:mod:`backendai.agent.docker`): turns
:class:`~backendai.hw.ContainerResources` into ``create_host_config`` options,
and records the :class:`~backendai.hw.Allocation` in the ``ai.backend.alloc``
label, from which a restarted agent rebuilds its allocations.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import docker.types

from ..hw import Allocation, ContainerResources, format_cpulist

__all__ = ["ALLOC_LABEL", "allocation_from_labels", "allocation_labels", "host_config_options"]

log = logging.getLogger(__name__)

ALLOC_LABEL = "ai.backend.alloc"


def host_config_options(resources: ContainerResources | None) -> dict[str, Any]:
    """Keyword arguments for ``APIClient.create_host_config``."""
    if resources is None:
        return {}
    options: dict[str, Any] = {}
    if resources.cpuset_cpus:
        options["cpuset_cpus"] = format_cpulist(resources.cpuset_cpus)
    if resources.cpuset_mems:
        options["cpuset_mems"] = format_cpulist(resources.cpuset_mems)
    if resources.device_requests:
        options["device_requests"] = [
            docker.types.DeviceRequest(
                driver=r.driver, device_ids=list(r.device_ids), capabilities=[list(r.capabilities)]
            )
            for r in resources.device_requests
        ]
    return options


def allocation_labels(allocation: Allocation | None) -> dict[str, str]:
    if allocation is None:
        return {}
    return {ALLOC_LABEL: json.dumps(allocation.to_json(), separators=(",", ":"))}


def allocation_from_labels(labels: Mapping[str, str]) -> Allocation | None:
    """The recorded allocation; None when there is none or it cannot be read (logged)."""
    raw = labels.get(ALLOC_LABEL)
    if not raw:
        return None
    try:
        return Allocation.from_json(json.loads(raw))
    except ValueError as e:  # json.JSONDecodeError is a ValueError
        kernel = labels.get("ai.backend.kernel-id", "?")
        log.warning("kernel %s: label %s is unreadable (%s); ignored", kernel, ALLOC_LABEL, e)
        return None
