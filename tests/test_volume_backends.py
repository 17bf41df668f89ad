"""The VolumeBackend conformance suite, run against every backend.

Each test works on a fresh volume.  Blocking backend calls are called directly:
these are synchronous tests of the adapter, not of the event loop.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from backendai.errors import (
    Conflict,
    InvalidAPIParameters,
    NotFound,
    QuotaExceeded,
    VFolderNotFound,
)
from backendai.vfs import VolumeBackend, fileops, load_backend, uploads
from backendai.vfs.tokens import TransferClaims

from .volumes import btrfs_volume


@pytest.fixture(params=["vfs", "btrfs"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VolumeBackend]:
    if request.param == "vfs":
        yield load_backend("vfs", tmp_path / "vol")
        return
    with btrfs_volume(tmp_path, size_mib=300) as root:
        yield load_backend("btrfs", root)


def _write(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))


def test_backend_satisfies_the_protocol(backend: VolumeBackend) -> None:
    assert isinstance(backend, VolumeBackend)


def test_create_and_delete(backend: VolumeBackend) -> None:
    backend.create_folder("f1", None)
    assert backend.mount_path("f1").is_dir()
    assert list(backend.mount_path("f1").iterdir()) == []
    with pytest.raises(Conflict, match="'f1' already exists"):
        backend.create_folder("f1", None)
    _write(backend.mount_path("f1") / "a" / "b.bin", 1000)
    backend.delete_folder("f1")
    assert not backend.mount_path("f1").exists()
    with pytest.raises(VFolderNotFound, match="no folder 'f1'"):
        backend.delete_folder("f1")


@pytest.mark.parametrize("bad", ["", "../x", "a/b", ".hidden", "x" * 65, "a b"])
def test_folder_ids_are_checked(backend: VolumeBackend, bad: str) -> None:
    with pytest.raises(InvalidAPIParameters, match="folder id"):
        backend.create_folder(bad, None)


def test_usage_counts_files_and_bytes(backend: VolumeBackend) -> None:
    backend.create_folder("u", None)
    root = backend.mount_path("u")
    _write(root / "one", 100_000)
    _write(root / "d" / "two", 50_000)
    usage = backend.usage("u")
    # vfs counts files while it scans; btrfs reads bytes from the qgroup and does not count.
    assert usage.file_count == (2 if backend.kind == "vfs" else None)
    # Apparent size on vfs; allocated size (4 KiB blocks, metadata) on quota file systems.
    assert 150_000 <= usage.used_bytes <= 150_000 + 64 * 1024


def test_quota_is_kept_and_reservations_refused_past_it(backend: VolumeBackend) -> None:
    backend.create_folder("q", 1_000_000)
    assert backend.get_quota("q") == 1_000_000
    backend.reserve("q", 900_000, 0)
    with pytest.raises(
        QuotaExceeded, match=r"folder 'q' would exceed its quota of .*1000000 bytes"
    ):
        backend.reserve("q", 900_000, 200_000)
    backend.set_quota("q", 2_000_000)
    assert backend.get_quota("q") == 2_000_000
    backend.reserve("q", 900_000, 200_000)
    backend.set_quota("q", None)
    assert backend.get_quota("q") is None
    backend.reserve("q", 10**12, 0)
    with pytest.raises(InvalidAPIParameters, match="quota -5 is invalid"):
        backend.set_quota("q", -5)


def test_clone_copies_files_and_quota_then_diverges(backend: VolumeBackend) -> None:
    backend.create_folder("src", 5_000_000)
    _write(backend.mount_path("src") / "data" / "x.bin", 200_000)
    os.symlink("data/x.bin", backend.mount_path("src") / "link")
    backend.clone_folder("src", "dst")
    dst = backend.mount_path("dst")
    assert (dst / "data" / "x.bin").read_bytes() == (
        backend.mount_path("src") / "data" / "x.bin"
    ).read_bytes()
    assert os.readlink(dst / "link") == "data/x.bin"
    assert backend.get_quota("dst") == 5_000_000
    (dst / "data" / "x.bin").write_bytes(b"changed")
    assert (backend.mount_path("src") / "data" / "x.bin").stat().st_size == 200_000
    with pytest.raises(Conflict):
        backend.clone_folder("src", "dst")
    with pytest.raises(VFolderNotFound):
        backend.clone_folder("nope", "other")


def test_staging_dir_is_beside_the_files_on_the_same_file_system(backend: VolumeBackend) -> None:
    backend.create_folder("s", None)
    staging = backend.staging_dir("s")
    root = backend.mount_path("s")
    assert staging.is_dir()
    assert os.stat(staging).st_dev == os.stat(root).st_dev
    assert root.resolve() not in staging.resolve().parents
    (staging / "part").write_bytes(b"x")
    os.rename(staging / "part", root / "whole")  # publishing is one rename
    assert (root / "whole").read_bytes() == b"x"
    with pytest.raises(VFolderNotFound):
        backend.staging_dir("missing")


def test_file_operations(backend: VolumeBackend) -> None:
    backend.create_folder("ops", None)
    root = backend.mount_path("ops")
    fileops.make_dir(root, "a/b", parents=True)
    with pytest.raises(Conflict, match="'a/b' already exists"):
        fileops.make_dir(root, "a/b")
    with pytest.raises(NotFound, match="pass parents=true"):
        fileops.make_dir(root, "x/y")
    _write(root / "a" / "f.txt", 10)
    names = {e.name: e.type for batch in fileops.iter_dir(root, "a") for e in batch}
    assert names == {"b": "DIRECTORY", "f.txt": "FILE"}
    fileops.rename_path(root, "a/f.txt", "g.txt")
    fileops.move_path(root, "a/g.txt", "a/b")
    assert (root / "a" / "b" / "g.txt").stat().st_size == 10
    with pytest.raises(InvalidAPIParameters, match="is a directory; pass recursive=true"):
        fileops.delete_paths(root, ["a"])
    fileops.delete_paths(root, ["a"], recursive=True)
    assert list(root.iterdir()) == []


def test_file_operations_stay_inside_the_folder(backend: VolumeBackend, tmp_path: Path) -> None:
    backend.create_folder("jail", None)
    root = backend.mount_path("jail")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("k")
    os.symlink(str(outside), root / "escape")
    for call in (
        lambda: fileops.make_dir(root, "escape/new"),
        lambda: list(fileops.iter_dir(root, "escape")),
        lambda: fileops.move_path(root, "escape/keep", "here"),
        lambda: fileops.delete_paths(root, ["escape/keep"]),
        lambda: fileops.make_dir(root, "../x"),
        lambda: fileops.delete_paths(root, ["/etc/passwd"]),
    ):
        with pytest.raises(InvalidAPIParameters, match=r"outside the folder|'\.\.'|absolute"):
            call()
    assert (outside / "keep").read_text() == "k"
    assert not (outside / "new").exists()
    # Deleting the link removes the link, not what it points to.
    fileops.delete_paths(root, ["escape"])
    assert (outside / "keep").exists()


def test_listing_streams_in_batches(backend: VolumeBackend) -> None:
    backend.create_folder("many", None)
    root = backend.mount_path("many")
    for i in range(2500):
        (root / f"f{i}").touch()
    batches = list(fileops.iter_dir(root, "", batch=1000))
    assert [len(b) for b in batches] == [1000, 1000, 500]
    assert len({e.name for b in batches for e in b}) == 2500


def test_abandoned_uploads_expire(backend: VolumeBackend) -> None:
    backend.create_folder("old", 10_000_000)
    claims = TransferClaims("upload", "vol", "old", "x.bin", time.time() + 60, 6_000_000)
    up = uploads.begin_upload(backend, claims, "x.bin")
    assert backend.staging_dir("old") in backend.staging_dirs()
    other = TransferClaims("upload", "vol", "old", "y.bin", time.time() + 60, 6_000_000)
    with pytest.raises(QuotaExceeded, match="6000000 promised to unfinished uploads"):
        uploads.begin_upload(backend, other, "y.bin")
    assert uploads.expire_uploads(backend, 3600, time.time()) == 0
    assert uploads.expire_uploads(backend, 3600, time.time() + 3601) == 1
    assert not up.part.exists()
    uploads.begin_upload(backend, other, "y.bin")  # the quota it held is free again
