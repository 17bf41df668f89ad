"""Volumes the storage proxy serves: directories under the volumes root, each with a backend.

``[storage] volume_backends`` names a backend per volume (``fast=btrfs,bulk=vfs``);
a volume not named there uses ``vfs``.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, VFolderNotFound
from .backend import VolumeBackend, load_backend

__all__ = ["VolumeInfo", "Volumes", "list_volumes", "open_volumes", "parse_volume_backends"]

DEFAULT_VOLUME = "local"


@dataclass(frozen=True)
class VolumeInfo:
    name: str
    backend: str
    path: str
    capacity_bytes: int
    used_bytes: int


def parse_volume_backends(spec: str) -> dict[str, str]:
    """``"fast=btrfs, bulk=vfs"`` -> ``{"fast": "btrfs", "bulk": "vfs"}``."""
    out: dict[str, str] = {}
    for item in spec.split(","):
        if not item.strip():
            continue
        name, sep, kind = (s.strip() for s in item.partition("="))
        if not sep or not name or not kind:
            raise ConfigError(
                f"storage.volume_backends: item {item.strip()!r} is invalid; expected volume=backend"
            )
        out[name] = kind
    return out


class Volumes:
    """The volumes of one storage proxy, by name."""

    def __init__(
        self, backends: dict[str, VolumeBackend], owner: tuple[int, int] | None = None
    ) -> None:
        self._backends = backends
        # Who folders and written files belong to (the kernels' uid/gid); None: the proxy.
        self.owner = owner

    def get(self, name: str) -> VolumeBackend:
        try:
            return self._backends[name]
        except KeyError:
            raise VFolderNotFound(
                f"no volume {name!r} on this storage proxy; volumes: {sorted(self._backends)}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._backends)

    def info(self) -> list[VolumeInfo]:
        """Blocking (statvfs per volume)."""
        out = []
        for name in self.names():
            b = self._backends[name]
            usage = shutil.disk_usage(b.root)
            out.append(VolumeInfo(name, b.kind, str(b.root), usage.total, usage.used))
        return out


def open_volumes(
    root: Path, backends_spec: str = "", owner: tuple[int, int] | None = None
) -> Volumes:
    """One volume per directory under *root* (``local`` made when none exists).  Blocking."""
    kinds = parse_volume_backends(backends_spec)
    root.mkdir(parents=True, exist_ok=True)
    if not any(p.is_dir() for p in root.iterdir()):
        (root / DEFAULT_VOLUME).mkdir()
    missing = sorted(set(kinds) - {p.name for p in root.iterdir() if p.is_dir()})
    if missing:
        raise ConfigError(
            f"storage.volume_backends names {missing}, which are not directories under {root}"
        )
    backends = {
        p.name: load_backend(kinds.get(p.name, "vfs"), p)
        for p in sorted(root.iterdir())
        if p.is_dir() and not p.name.startswith(".")
    }
    return Volumes(backends, owner)


def list_volumes(root: Path) -> list[VolumeInfo]:
    """Every volume under *root* with its capacity and usage.  Blocking."""
    return open_volumes(root).info()
