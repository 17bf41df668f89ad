"""Paths a client names, kept inside the kernel's work directory.

:func:`normalize` is pure: it turns what a client sent (``data/x.csv``,
``/home/work/data/x.csv``) into a normalised path relative to the work
directory, or raises :class:`PathError` naming the path and why.
:func:`resolve` adds the file system: the real path (symlinks followed) must
stay inside the real work directory.
"""

from __future__ import annotations

import os
import posixpath

CANONICAL_ROOT = "/home/work"


class PathError(Exception):
    """A client's path is malformed or leaves the work directory."""


def normalize(workdir: str, path: object) -> str:
    """*path* relative to *workdir*, normalised (``"."`` is the work directory itself).

    An absolute path may name *workdir* or ``/home/work`` (the API's name for it, which
    is what it is in a container).
    """
    if not isinstance(path, str) or not path:
        raise PathError(f"invalid path {path!r}; expected a non-empty string")
    if "\x00" in path:
        raise PathError(f"invalid path {path!r}: it contains a NUL character")
    root = posixpath.normpath(workdir)
    if path.startswith("/"):
        absolute = posixpath.normpath(path)
        for prefix in (root, CANONICAL_ROOT):
            if absolute == prefix:
                return "."
            if absolute.startswith(prefix.rstrip("/") + "/"):
                path = absolute[len(prefix.rstrip("/")) + 1 :]
                break
        else:
            raise PathError(f"path {path!r} is outside {root}; expected a path under it")
    norm = posixpath.normpath(path)
    if norm == ".." or norm.startswith("../"):
        raise PathError(f"path {path!r} leaves {root}; expected a path under it")
    return norm


def within(root_real: str, real: str) -> bool:
    return real == root_real or real.startswith(root_real.rstrip("/") + "/")


def resolve(workdir: str, path: object) -> str:
    """The absolute path of *path* under *workdir*, checked against symlink escapes."""
    rel = normalize(workdir, path)
    full = os.path.join(workdir, rel) if rel != "." else workdir
    root_real = os.path.realpath(workdir)
    real = os.path.realpath(full)
    if not within(root_real, real):
        raise PathError(
            f"path {path!r} resolves to {real}, outside {workdir} (through a symbolic link)"
        )
    return full


def prepare_parent(workdir: str, full: str, shown: object) -> None:
    """Create the parent directories of *full*, refusing to create any outside *workdir*."""
    root_real = os.path.realpath(workdir)
    parent = os.path.dirname(full)
    existing = parent
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    if not within(root_real, os.path.realpath(existing)):
        raise PathError(f"path {shown!r} leaves {workdir} through a symbolic link")
    if os.path.lexists(parent) and not os.path.isdir(parent):
        raise PathError(f"path {shown!r}: {os.path.dirname(full)} is not a directory")
    os.makedirs(parent, exist_ok=True)
    if not within(root_real, os.path.realpath(parent)):
        raise PathError(f"path {shown!r} leaves {workdir} through a symbolic link")
