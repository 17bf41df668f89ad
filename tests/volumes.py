"""Test volumes: a loop-mounted btrfs image made for a test, removed after it."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from .services import require_service

_HINT = "scripts/setup --dev installs btrfs-progs"


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False)


@contextlib.contextmanager
def btrfs_volume(tmp_path: Path, *, size_mib: int, at: Path | None = None) -> Iterator[Path]:
    """A fresh btrfs file system of *size_mib* on a loop device, mounted at *at*."""
    require_service(shutil.which("mkfs.btrfs") is not None, "mkfs.btrfs", _HINT)
    image = tmp_path / "btrfs.img"
    mnt = at or tmp_path / "btrfs"
    mnt.mkdir(parents=True)
    with open(image, "wb") as f:
        f.truncate(size_mib * 1024 * 1024)
    made = _run("mkfs.btrfs", "-q", str(image))
    require_service(made.returncode == 0, f"mkfs.btrfs ({made.stderr.strip()})", _HINT)
    mounted = _run("mount", "-o", "loop", str(image), str(mnt))
    require_service(
        mounted.returncode == 0,
        f"loop-mounting a btrfs image ({mounted.stderr.strip()})",
        "it needs root, loop devices (/dev/loop-control) and the btrfs kernel module",
    )
    try:
        yield mnt
    finally:
        _run("umount", str(mnt))
