"""The ``btrfs`` backend: a subvolume per folder, qgroup hard limits, snapshot clones.

Layout under the volume root (which must be a btrfs file system, quotas are
turned on at start)::

    folders/<id>/           a subvolume; its qgroup carries the folder's limit
    folders/<id>/data/      the folder's files (what sessions mount)
    folders/<id>/staging/   partial uploads: inside the quota, outside the mount
    .meta/<id>.json         the quota as asked

The kernel enforces the limit (a write past it fails with EDQUOT, from a
session too); usage is the qgroup's referenced bytes, read without scanning;
a clone is a snapshot (instant, shares extents until written).  Blocking:
``btrfs-progs`` runs as a subprocess from the worker thread.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from ..errors import (
    ConfigError,
    Conflict,
    QuotaExceeded,
    ServerError,
    VFolderNotFound,
)
from .backend import FolderUsage, check_folder_id
from .posix import check_quota_value, quota_message, read_quota, write_quota

__all__ = ["BtrfsBackend"]


def _btrfs(*args: str) -> str:
    try:
        done = subprocess.run(
            ["btrfs", *args], capture_output=True, text=True, check=False, timeout=120
        )
    except FileNotFoundError:
        raise ConfigError("the btrfs backend needs the btrfs command (btrfs-progs)") from None
    if done.returncode != 0:
        raise ServerError(f"btrfs {' '.join(args)}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


class BtrfsBackend:
    kind = "btrfs"
    staging_in_usage = True

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "folders").mkdir(parents=True, exist_ok=True)
        (root / ".meta").mkdir(exist_ok=True)
        try:
            _btrfs("quota", "enable", str(root))
        except ServerError as e:
            raise ConfigError(f"volume {root}: not a btrfs file system with quotas: {e}") from None

    def _subvol(self, folder_id: str) -> Path:
        return self.root / "folders" / check_folder_id(folder_id)

    def _existing(self, folder_id: str) -> Path:
        path = self._subvol(folder_id)
        if not (path / "data").is_dir():
            raise VFolderNotFound(f"no folder {folder_id!r} on volume {self.root.name!r}")
        return path

    def _meta(self, folder_id: str) -> Path:
        return self.root / ".meta" / f"{check_folder_id(folder_id)}.json"

    def mount_path(self, folder_id: str) -> Path:
        return self._subvol(folder_id) / "data"

    def staging_dir(self, folder_id: str) -> Path:
        return self._existing(folder_id) / "staging"

    def staging_dirs(self) -> list[Path]:
        return [p for p in (self.root / "folders").glob("*/staging") if p.is_dir()]

    def create_folder(self, folder_id: str, quota_bytes: int | None) -> None:
        check_quota_value(quota_bytes)
        path = self._subvol(folder_id)
        if path.exists():
            raise Conflict(f"folder {folder_id!r} already exists on {self.root.name!r}")
        _btrfs("subvolume", "create", str(path))
        (path / "data").mkdir()
        (path / "staging").mkdir()
        self.set_quota(folder_id, quota_bytes)

    def delete_folder(self, folder_id: str) -> None:
        path = self._existing(folder_id)
        qgroup = self._qgroup(path)
        _btrfs("subvolume", "delete", str(path))
        # The qgroup of a deleted subvolume lingers; drop it (it may be busy until cleaned).
        subprocess.run(
            ["btrfs", "qgroup", "destroy", qgroup, str(self.root)], capture_output=True, check=False
        )
        self._meta(folder_id).unlink(missing_ok=True)

    def clone_folder(self, src_id: str, dst_id: str) -> None:
        src = self._existing(src_id)
        dst = self._subvol(dst_id)
        if dst.exists():
            raise Conflict(f"folder {dst_id!r} already exists on {self.root.name!r}")
        _btrfs("subvolume", "snapshot", str(src), str(dst))
        shutil.rmtree(dst / "staging", ignore_errors=True)  # the source's partial uploads
        (dst / "staging").mkdir()
        self.set_quota(dst_id, self.get_quota(src_id))

    def get_quota(self, folder_id: str) -> int | None:
        self._existing(folder_id)
        return read_quota(self._meta(folder_id))

    def set_quota(self, folder_id: str, quota_bytes: int | None) -> None:
        check_quota_value(quota_bytes)
        path = self._existing(folder_id)
        _btrfs("qgroup", "limit", "none" if quota_bytes is None else str(quota_bytes), str(path))
        write_quota(self._meta(folder_id), quota_bytes)

    def _qgroup(self, path: Path) -> str:
        for line in _btrfs("subvolume", "show", str(path)).splitlines():
            key, _, value = line.strip().partition(":")
            if key.strip() == "Subvolume ID":
                return f"0/{value.strip()}"
        raise ServerError(f"btrfs subvolume show {path}: no subvolume id")

    def _referenced(self, path: Path) -> int:
        _btrfs("filesystem", "sync", str(path))  # qgroups count what is committed
        qgroup = self._qgroup(path)
        for line in _btrfs("qgroup", "show", "--raw", str(path)).splitlines():
            fields = line.split()
            if fields and fields[0] == qgroup:
                return int(fields[1])
        raise ServerError(f"btrfs qgroup show {path}: no qgroup {qgroup}")

    def usage(self, folder_id: str) -> FolderUsage:
        # Bytes from the qgroup; no file count, which would take a scan.
        return FolderUsage(None, self._referenced(self._existing(folder_id)))

    def reserve(self, folder_id: str, nbytes: int, pending: int) -> None:
        quota = self.get_quota(folder_id)
        if quota is None:
            return
        used = self._referenced(self._existing(folder_id))
        if used + pending + nbytes > quota:
            raise QuotaExceeded(quota_message(folder_id, quota, used, pending, nbytes))
