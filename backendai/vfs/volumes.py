"""Volumes the storage proxy serves: directories under the volumes root, with their usage.

The core platform knows plain POSIX volumes only; vendor backends and quotas
come with the storage issue behind the ``VolumeBackend`` seam.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

__all__ = ["VolumeInfo", "list_volumes"]

DEFAULT_VOLUME = "local"


@dataclass(frozen=True)
class VolumeInfo:
    name: str
    backend: str
    path: str
    capacity_bytes: int
    used_bytes: int


def list_volumes(root: Path) -> list[VolumeInfo]:
    """One volume per directory under *root*; ``local`` is created when none exists."""
    root.mkdir(parents=True, exist_ok=True)
    if not any(p.is_dir() for p in root.iterdir()):
        (root / DEFAULT_VOLUME).mkdir()
    out = []
    for p in sorted(root.iterdir()):
        if p.is_dir():
            usage = shutil.disk_usage(p)
            out.append(VolumeInfo(p.name, "vfs", str(p), usage.total, usage.used))
    return out
