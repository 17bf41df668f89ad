"""The ``vfs`` backend: plain POSIX directories, quota enforced by accounting.

Layout under the volume root::

    folders/<id>/        the folder's files (what sessions mount)
    .meta/<id>.json      its quota
    .uploads/<id>/       partial uploads, on the same file system (an atomic rename
                         publishes a finished file)

The file system knows no limit here: the storage proxy refuses an upload that
would take usage (scanned) plus bytes promised to unfinished uploads past the
quota.  Writes from inside a session are not limited; that takes a backend
with a kernel-enforced quota (btrfs, xfs).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path

from ..errors import Conflict, InvalidAPIParameters, QuotaExceeded, VFolderNotFound
from .backend import FolderUsage, check_folder_id

__all__ = [
    "VfsBackend",
    "check_quota_value",
    "quota_message",
    "read_quota",
    "scan_usage",
    "write_quota",
]


def scan_usage(root: Path) -> FolderUsage:
    """Files and apparent bytes under *root*, walking with scandir (no symlinks followed)."""
    files = 0
    used = 0
    stack = [str(root)]
    while stack:
        top = stack.pop()
        try:
            it = os.scandir(top)
        except (FileNotFoundError, NotADirectoryError):
            continue
        with it:
            for entry in it:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                    continue
                with contextlib.suppress(FileNotFoundError):
                    used += entry.stat(follow_symlinks=False).st_size
                    files += 1
    return FolderUsage(files, used)


def read_quota(meta: Path) -> int | None:
    """The quota recorded in *meta* (``{"quota_bytes": N}``); None when absent."""
    try:
        value = json.loads(meta.read_text()).get("quota_bytes")
    except FileNotFoundError:
        return None
    return int(value) if value is not None else None


def write_quota(meta: Path, quota_bytes: int | None) -> None:
    tmp = meta.with_suffix(".tmp")
    tmp.write_text(json.dumps({"quota_bytes": quota_bytes}))
    os.replace(tmp, meta)


def _human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    raise AssertionError


def quota_message(folder_id: str, quota: int, used: int, pending: int, nbytes: int) -> str:
    free = max(0, quota - used - pending)
    return (
        f"folder {folder_id!r} would exceed its quota of {_human(quota)} ({quota} bytes): "
        f"{used} bytes used, {pending} promised to unfinished uploads, {nbytes} more asked, "
        f"{free} bytes free"
    )


class VfsBackend:
    kind = "vfs"
    staging_in_usage = False

    def __init__(self, root: Path) -> None:
        self.root = root
        for sub in ("folders", ".meta", ".uploads"):
            (root / sub).mkdir(parents=True, exist_ok=True)

    def _meta(self, folder_id: str) -> Path:
        return self.root / ".meta" / f"{check_folder_id(folder_id)}.json"

    def _existing(self, folder_id: str) -> Path:
        path = self.mount_path(folder_id)
        if not path.is_dir():
            raise VFolderNotFound(f"no folder {folder_id!r} on volume {self.root.name!r}")
        return path

    def mount_path(self, folder_id: str) -> Path:
        return self.root / "folders" / check_folder_id(folder_id)

    def staging_dir(self, folder_id: str) -> Path:
        self._existing(folder_id)
        path = self.root / ".uploads" / folder_id
        path.mkdir(exist_ok=True)
        return path

    def staging_dirs(self) -> list[Path]:
        return [p for p in (self.root / ".uploads").iterdir() if not p.name.startswith(".")]

    def _make_dir(self, folder_id: str) -> Path:
        path = self.mount_path(folder_id)
        try:
            path.mkdir()
        except FileExistsError:
            raise Conflict(f"folder {folder_id!r} already exists on {self.root.name!r}") from None
        return path

    def create_folder(self, folder_id: str, quota_bytes: int | None) -> None:
        check_quota_value(quota_bytes)
        self._make_dir(folder_id)
        self._write_quota(folder_id, quota_bytes)

    def delete_folder(self, folder_id: str) -> None:
        path = self._existing(folder_id)
        # Rename first so the folder vanishes at once even if the tree is large.
        doomed = self.root / ".uploads" / f".deleting-{folder_id}"
        os.rename(path, doomed)
        shutil.rmtree(doomed, ignore_errors=True)
        shutil.rmtree(self.root / ".uploads" / folder_id, ignore_errors=True)
        self._meta(folder_id).unlink(missing_ok=True)

    def clone_folder(self, src_id: str, dst_id: str) -> None:
        src = self._existing(src_id)
        quota = self.get_quota(src_id)
        dst = self.mount_path(dst_id)
        if dst.exists():
            raise Conflict(f"folder {dst_id!r} already exists on {self.root.name!r}")
        tmp = self.root / ".uploads" / f".cloning-{dst_id}"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(src, tmp, symlinks=True)
        os.rename(tmp, dst)
        self._write_quota(dst_id, quota)

    def get_quota(self, folder_id: str) -> int | None:
        self._existing(folder_id)
        return read_quota(self._meta(folder_id))

    def set_quota(self, folder_id: str, quota_bytes: int | None) -> None:
        check_quota_value(quota_bytes)
        self._existing(folder_id)
        self._write_quota(folder_id, quota_bytes)

    def _write_quota(self, folder_id: str, quota_bytes: int | None) -> None:
        write_quota(self._meta(folder_id), quota_bytes)

    def usage(self, folder_id: str) -> FolderUsage:
        return scan_usage(self._existing(folder_id))

    def reserve(self, folder_id: str, nbytes: int, pending: int) -> None:
        quota = self.get_quota(folder_id)
        if quota is None:
            return
        used = self.usage(folder_id).used_bytes
        if used + pending + nbytes > quota:
            raise QuotaExceeded(quota_message(folder_id, quota, used, pending, nbytes))


def check_quota_value(quota_bytes: int | None) -> None:
    if quota_bytes is not None and (
        not isinstance(quota_bytes, int) or isinstance(quota_bytes, bool) or quota_bytes <= 0
    ):
        raise InvalidAPIParameters(
            f"quota {quota_bytes!r} is invalid; expected a positive number of bytes or null"
        )
