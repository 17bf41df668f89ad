"""The ``VolumeBackend`` seam: folder lifecycle, quota and usage on one volume.

File operations inside a folder (listing, mkdir, rename, delete, uploads) are
plain POSIX on :meth:`VolumeBackend.mount_path` and live in ``fileops``; what
differs between storage systems is how a folder is made, cloned, limited and
measured, and that is what a backend implements.  Backends are found by name
through the ``backendai.volume_backends`` entry points, so a vendor backend
(XFS project quota, NetApp, ...) is a plugin.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Protocol, runtime_checkable

from ..errors import ConfigError, InvalidAPIParameters

__all__ = ["FolderUsage", "VolumeBackend", "check_folder_id", "load_backend"]

_FOLDER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


@dataclass(frozen=True)
class FolderUsage:
    file_count: int | None  # None: the backend cannot count without a scan
    used_bytes: int


def check_folder_id(folder_id: str) -> str:
    """*folder_id* if it is a safe directory name (letters, digits, ``-``, ``_``; 1-64)."""
    if not isinstance(folder_id, str) or not _FOLDER_ID.fullmatch(folder_id):
        raise InvalidAPIParameters(
            f"folder id {folder_id!r} is invalid; expected 1-64 letters, digits, '-' or '_'"
        )
    return folder_id


@runtime_checkable
class VolumeBackend(Protocol):
    """One volume.  Every method may block on the disk: callers use a worker thread."""

    kind: str
    root: Path
    # Whether bytes in staging_dir() count in usage() (they do where staging is inside
    # the folder's quota domain, as with a btrfs subvolume).
    staging_in_usage: bool

    def create_folder(self, folder_id: str, quota_bytes: int | None) -> None:
        """Make an empty folder; Conflict if it exists."""

    def delete_folder(self, folder_id: str) -> None:
        """Remove the folder and everything in it; VFolderNotFound if absent."""

    def clone_folder(self, src_id: str, dst_id: str) -> None:
        """Make *dst_id* a copy of *src_id* with the same quota."""

    def get_quota(self, folder_id: str) -> int | None:
        """The folder's byte limit; None: unlimited."""

    def set_quota(self, folder_id: str, quota_bytes: int | None) -> None:
        """Change the byte limit (None: unlimited)."""

    def usage(self, folder_id: str) -> FolderUsage:
        """Files and bytes the folder holds."""

    def mount_path(self, folder_id: str) -> Path:
        """Where the folder's files are on this host (what agents bind-mount)."""

    def staging_dir(self, folder_id: str) -> Path:
        """A directory on the folder's file system, outside its visible tree, for partial uploads."""

    def staging_dirs(self) -> list[Path]:
        """Every folder's staging directory (for dropping abandoned uploads)."""

    def reserve(self, folder_id: str, nbytes: int, pending: int) -> None:
        """Refuse (QuotaExceeded) if *nbytes* more, beside *pending* bytes already promised
        to unfinished uploads, would take the folder past its quota."""


def load_backend(kind: str, root: Path) -> VolumeBackend:
    """The backend named *kind* (an entry point of ``backendai.volume_backends``) for *root*."""
    found = {ep.name: ep for ep in entry_points(group="backendai.volume_backends")}
    if kind not in found:
        raise ConfigError(
            f"volume {root.name!r}: unknown backend {kind!r}; expected one of {sorted(found)}"
        )
    backend: VolumeBackend = found[kind].load()(root)
    return backend
