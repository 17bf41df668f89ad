"""Resumable uploads on disk: the state behind tus, kept so a restarted proxy resumes.

An upload is named by its token's claims (volume, folder, path, size), so a
client that asks the manager for a fresh token after a crash lands on the
same partial file.  Its bytes grow in the folder's staging directory
(``<key>.part``, described by ``<key>.json``) and are published at their path
by one rename when complete: a reader never sees a partial file.  The offset
is the part file's size, so it survives a killed process.  Blocking: called
from worker threads.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import Conflict, InvalidAPIParameters, QuotaExceeded
from .backend import VolumeBackend
from .fileops import Owner, give, make_dirs_owned
from .paths import relative_path, resolve_inside
from .tokens import TransferClaims

__all__ = [
    "Upload",
    "abort_upload",
    "append_chunk",
    "begin_upload",
    "destination",
    "expire_uploads",
    "find_upload",
    "finish_upload",
]


@dataclass(frozen=True)
class Upload:
    key: str
    path: str  # folder-relative destination
    length: int
    offset: int
    part: Path


def _key(claims: TransferClaims, path: str) -> str:
    raw = f"{claims.volume}\0{claims.folder}\0{path}\0{claims.size}"
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def _pending(staging: Path, backend: VolumeBackend, skip: str) -> int:
    """Bytes promised to the folder's other unfinished uploads and not yet in its usage."""
    total = 0
    for meta in staging.glob("*.json"):
        if meta.stem == skip:
            continue
        with contextlib.suppress(FileNotFoundError, ValueError):
            length = int(json.loads(meta.read_text())["length"])
            written = meta.with_suffix(".part").stat().st_size if backend.staging_in_usage else 0
            total += max(0, length - written)
    return total


def destination(claims: TransferClaims, dst_dir: str | None) -> str:
    """The folder-relative path the upload lands at (under *dst_dir* when given)."""
    rel = relative_path(claims.path, allow_root=False)
    if dst_dir:
        rel = relative_path(dst_dir) / rel
    return str(rel)


def find_upload(backend: VolumeBackend, claims: TransferClaims, path: str) -> Upload | None:
    key = _key(claims, path)
    staging = backend.staging_dir(claims.folder)
    part = staging / f"{key}.part"
    try:
        offset = part.stat().st_size
    except FileNotFoundError:
        return None
    return Upload(key, path, int(claims.size or 0), offset, part)


def begin_upload(backend: VolumeBackend, claims: TransferClaims, path: str) -> Upload:
    """The upload for these claims, made (quota reserved) if it is new.

    The caller serialises calls per folder, so two new uploads cannot both
    take the last free bytes.
    """
    if claims.size is None or claims.size < 0:
        raise InvalidAPIParameters(f"upload token carries size {claims.size!r}; expected >= 0")
    found = find_upload(backend, claims, path)
    if found is not None:
        return found
    # Refuse now what finish_upload would refuse after all the bytes came.
    dest = resolve_inside(
        backend.mount_path(claims.folder), relative_path(path, allow_root=False), follow_last=False
    )
    if dest.is_dir() and not dest.is_symlink():
        raise Conflict(f"cannot upload to {path!r}: a directory is there")
    key = _key(claims, path)
    staging = backend.staging_dir(claims.folder)
    backend.reserve(claims.folder, claims.size, _pending(staging, backend, key))
    meta = staging / f"{key}.json"
    meta.write_text(json.dumps({"path": path, "length": claims.size}))
    part = staging / f"{key}.part"
    part.touch()
    return Upload(key, path, claims.size, 0, part)


def append_chunk(upload: Upload, offset: int, data: bytes | bytearray | list[bytes]) -> int:
    """Write *data* (a buffer, or buffers written in one ``pwritev``) at *offset* of the
    part file; the new offset.

    Out of quota or space (EDQUOT, ENOSPC): the upload is dropped, then QuotaExceeded.
    """
    pieces = [memoryview(d) for d in (data if isinstance(data, list) else [data]) if d]
    fd = os.open(upload.part, os.O_WRONLY)
    try:
        while pieces:
            try:
                n = os.pwritev(fd, pieces[:1024], offset)  # IOV_MAX is 1024 on Linux
            except OSError as e:
                if e.errno in (errno.EDQUOT, errno.ENOSPC):
                    abort_upload(upload)
                    raise QuotaExceeded(
                        f"writing {upload.path!r} at offset {offset}: {os.strerror(e.errno)}"
                    ) from None
                raise
            offset += n
            while n and pieces:  # drop what was written; a short write leaves a partial piece
                if n >= len(pieces[0]):
                    n -= len(pieces.pop(0))
                else:
                    pieces[0] = pieces[0][n:]
                    n = 0
    finally:
        os.close(fd)
    return offset


def abort_upload(upload: Upload) -> None:
    upload.part.unlink(missing_ok=True)
    upload.part.with_suffix(".json").unlink(missing_ok=True)


def _flush(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def finish_upload(
    backend: VolumeBackend,
    folder: str,
    upload: Upload,
    owner: Owner = None,
    *,
    sync: bool = True,
) -> None:
    """Publish a complete upload at its path (one rename); parents are made as needed.

    With *sync*, the bytes reach the disk (fdatasync) before the file appears, and the
    rename is made durable too: a file that is there after a crash is whole.
    """
    root = backend.mount_path(folder)
    rel = relative_path(upload.path, allow_root=False)
    make_dirs_owned(root, rel.parent, owner)
    resolve_inside(root, rel.parent)  # a parent raced into a symlink leading out is refused
    give(upload.part, owner)
    dest = resolve_inside(root, rel, follow_last=False)
    if dest.is_dir() and not dest.is_symlink():
        raise Conflict(f"cannot upload to {upload.path!r}: a directory is there")
    if sync:
        _flush(upload.part)
    os.replace(upload.part, dest)
    upload.part.with_suffix(".json").unlink(missing_ok=True)
    if sync:
        _flush(dest.parent)  # the rename itself


def expire_uploads(backend: VolumeBackend, idle: float, now: float) -> int:
    """Drop uploads untouched for *idle* seconds (their bytes, and the quota they hold)."""
    dropped = 0
    for staging in backend.staging_dirs():
        for meta in staging.glob("*.json"):
            part = meta.with_suffix(".part")
            try:
                touched = max(meta.stat().st_mtime, part.stat().st_mtime)
            except FileNotFoundError:
                touched = 0.0  # a half-made or half-removed pair: old enough
            if now - touched > idle:
                part.unlink(missing_ok=True)
                meta.unlink(missing_ok=True)
                dropped += 1
    return dropped
