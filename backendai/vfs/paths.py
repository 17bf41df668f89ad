"""Path safety for virtual folders: a client path never leaves its folder.

Two layers.  :func:`relative_path` is pure: it parses what a client sent and
refuses absolute paths, ``..``, NUL bytes and over-long names before anything
touches the disk.  :func:`resolve_inside` runs on the real file system and
refuses a path whose symlinks lead outside the folder root.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from ..errors import InvalidAPIParameters

__all__ = ["relative_path", "resolve_inside"]

_MAX_PATH = 4096
_MAX_NAME = 255


def relative_path(raw: str, *, allow_root: bool = True) -> PurePosixPath:
    """The folder-relative path *raw* names; ``""`` and ``"."`` are the folder root.

    Refuses (InvalidAPIParameters, naming the value) absolute paths, ``..``
    components, NUL bytes, and paths or names longer than POSIX allows.
    """
    if not isinstance(raw, str):
        raise InvalidAPIParameters(f"path must be a string, got {type(raw).__name__}")
    if "\x00" in raw:
        raise InvalidAPIParameters(f"path {raw!r} contains a NUL byte")
    if len(raw.encode()) > _MAX_PATH:
        raise InvalidAPIParameters(f"path of {len(raw.encode())} bytes is longer than {_MAX_PATH}")
    if raw.startswith("/"):
        raise InvalidAPIParameters(
            f"path {raw!r} is absolute; expected a path relative to the folder"
        )
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    for part in parts:
        if part == "..":
            raise InvalidAPIParameters(f"path {raw!r} climbs out with '..'; expected a path inside")
        if len(part.encode()) > _MAX_NAME:
            raise InvalidAPIParameters(f"name {part[:40]!r}... is longer than {_MAX_NAME} bytes")
    if not parts and not allow_root:
        raise InvalidAPIParameters(f"path {raw!r} names the folder itself; expected a file in it")
    return PurePosixPath(*parts) if parts else PurePosixPath(".")


def resolve_inside(root: Path, rel: PurePosixPath, *, follow_last: bool = True) -> Path:
    """The real path of *rel* under *root*, refusing symlinks that point outside *root*.

    With ``follow_last=False`` the last component is not resolved (deleting or
    renaming a symlink acts on the link itself), but its parent must still stay
    inside.  Blocking (it stats the file system): call it from a worker thread.
    """
    real_root = os.path.realpath(root)
    target = os.path.join(real_root, str(rel)) if str(rel) != "." else real_root
    if follow_last:
        resolved = os.path.realpath(target)
    else:
        parent = os.path.realpath(os.path.dirname(target)) if str(rel) != "." else real_root
        resolved = os.path.join(parent, os.path.basename(target)) if str(rel) != "." else parent
    if resolved != real_root and not resolved.startswith(real_root + os.sep):
        # The message names the client's path, never the host path the link points to.
        raise InvalidAPIParameters(f"path {str(rel)!r} leads outside the folder through a symlink")
    return Path(resolved)
