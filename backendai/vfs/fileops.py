"""File operations inside one folder: list, mkdir, rename, move, delete.

Every function takes the folder's root (a backend's ``mount_path``) and a
client path, checks the path (``paths``), and blocks on the disk: the storage
proxy calls them from worker threads.
"""

from __future__ import annotations

import os
import shutil
import stat as statmod
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import Conflict, InvalidAPIParameters, NotFound
from .paths import relative_path, resolve_inside

__all__ = [
    "DirEntry",
    "Owner",
    "delete_paths",
    "give",
    "iter_dir",
    "make_dir",
    "make_dirs_owned",
    "move_path",
    "rename_path",
    "stat_entry",
]


@dataclass(frozen=True)
class DirEntry:
    name: str
    type: str  # FILE, DIRECTORY, SYMLINK
    size: int
    mode: str  # like ls: -rw-r--r--
    created: float
    modified: float

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "type": self.type,
            "size": self.size,
            "mode": self.mode,
            "created": self.created,
            "modified": self.modified,
        }


def _entry(name: str, st: os.stat_result) -> DirEntry:
    kind = (
        "DIRECTORY"
        if statmod.S_ISDIR(st.st_mode)
        else "SYMLINK"
        if statmod.S_ISLNK(st.st_mode)
        else "FILE"
    )
    return DirEntry(name, kind, st.st_size, statmod.filemode(st.st_mode), st.st_ctime, st.st_mtime)


def _dir(root: Path, raw: str) -> Path:
    path = resolve_inside(root, relative_path(raw))
    if not path.is_dir():
        what = "not found" if not path.exists() else "not a directory"
        raise NotFound(f"path {raw!r} in the folder: {what}")
    return path


def iter_dir(root: Path, raw: str, *, batch: int = 1000) -> Generator[list[DirEntry], None, None]:
    """The entries of directory *raw*, in batches, in the file system's order (not sorted).

    A generator over ``os.scandir``: a directory of any size streams in
    constant memory.
    """
    path = _dir(root, raw)
    out: list[DirEntry] = []
    with os.scandir(path) as it:
        for e in it:
            try:
                out.append(_entry(e.name, e.stat(follow_symlinks=False)))
            except FileNotFoundError:
                continue
            if len(out) >= batch:
                yield out
                out = []
    if out:
        yield out


def stat_entry(root: Path, raw: str) -> DirEntry:
    rel = relative_path(raw)
    path = resolve_inside(root, rel, follow_last=False)
    try:
        return _entry(rel.name or ".", os.lstat(path))
    except FileNotFoundError:
        raise NotFound(f"path {raw!r} not found in the folder") from None


Owner = tuple[int, int] | None


def give(path: Path, owner: Owner) -> None:
    """Hand *path* to the kernels' uid/gid (see ``storage.kernel_uid``); None: leave it."""
    if owner is not None:
        os.chown(path, *owner, follow_symlinks=False)


def make_dirs_owned(root: Path, rel: PurePosixPath, owner: Owner) -> Path:
    """Make directory *rel* and its missing parents inside *root*, each given to *owner*."""
    path = root
    for i in range(1, len(rel.parts) + 1):
        path = resolve_inside(root, PurePosixPath(*rel.parts[:i]))
        try:
            path.mkdir()
        except FileExistsError:
            continue
        give(path, owner)
    return path


def make_dir(
    root: Path, raw: str, *, parents: bool = False, exist_ok: bool = False, owner: Owner = None
) -> None:
    rel = relative_path(raw, allow_root=False)
    resolve_inside(root, rel.parent)
    path = resolve_inside(root, rel, follow_last=False)
    try:
        if parents:
            existed = path.is_dir()
            make_dirs_owned(root, rel, owner)
            if existed and not exist_ok:
                raise FileExistsError
        else:
            path.mkdir(exist_ok=exist_ok)
            give(path, owner)
    except FileExistsError:
        raise Conflict(f"path {raw!r} already exists in the folder") from None
    except FileNotFoundError:
        raise NotFound(f"parent of {raw!r} does not exist (pass parents=true)") from None
    # A parent made by mkdir -p could be raced into a symlink; check the result again.
    resolve_inside(root, rel)


def _move(root: Path, src_raw: str, dst_raw: str) -> None:
    src = resolve_inside(root, relative_path(src_raw, allow_root=False), follow_last=False)
    dst_rel = relative_path(dst_raw, allow_root=False)
    dst = resolve_inside(root, dst_rel, follow_last=False)
    if not os.path.lexists(src):
        raise NotFound(f"path {src_raw!r} not found in the folder")
    if dst.is_dir() and not dst.is_symlink():
        dst = resolve_inside(root, dst_rel / src.name, follow_last=False)
    if os.path.lexists(dst):
        raise Conflict(f"path {dst_raw!r} already exists in the folder")
    if not dst.parent.is_dir():
        raise NotFound(f"directory of {dst_raw!r} does not exist in the folder")
    os.rename(src, dst)


def rename_path(root: Path, raw: str, new_name: str) -> None:
    """Give *raw* the new base name *new_name* (in the same directory)."""
    if not new_name or "/" in new_name or new_name in (".", ".."):
        raise InvalidAPIParameters(
            f"new name {new_name!r} is invalid; expected a plain file name without '/'"
        )
    rel = relative_path(raw, allow_root=False)
    _move(root, str(rel), str(rel.parent / new_name))


def move_path(root: Path, src_raw: str, dst_raw: str) -> None:
    """Move *src_raw* to *dst_raw*; into it when *dst_raw* is an existing directory."""
    _move(root, src_raw, dst_raw)


def delete_paths(root: Path, raws: list[str], *, recursive: bool = False) -> None:
    """Delete files (and directories with *recursive*); all paths are checked first."""
    targets = [
        (raw, resolve_inside(root, relative_path(raw, allow_root=False), follow_last=False))
        for raw in raws
    ]
    for raw, path in targets:
        if not os.path.lexists(path):
            raise NotFound(f"path {raw!r} not found in the folder")
        if path.is_dir() and not path.is_symlink() and not recursive:
            raise InvalidAPIParameters(f"path {raw!r} is a directory; pass recursive=true")
    for _, path in targets:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
