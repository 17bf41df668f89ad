"""Folder mounts of a new session: ``config.mounts``, ``mount_map`` and ``mount_options``.

``mounts`` names folders (``["data", "models"]``); ``mount_map`` moves one
(``{"data": "/home/work/input"}``; a relative path is under ``/home/work``);
``mount_options`` asks for less than the caller holds
(``{"data": {"permission": "ro"}}``).  A folder the caller may only read is
mounted read-only whatever was asked; the container's bind mount enforces it.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidAPIParameters
from . import folders_repo as repo
from .api import Caller
from .context import ManagerContext

__all__ = ["MountRequest", "parse_mounts", "resolve_mounts"]

WORK_DIR = "/home/work"


@dataclass(frozen=True)
class MountRequest:
    name: str
    container_path: str
    read_only: bool  # asked for read-only


def _container_path(name: str, raw: Any) -> str:
    if raw is None:
        raw = name
    if not isinstance(raw, str) or not raw:
        raise InvalidAPIParameters(
            f"config.mount_map.{name}: {raw!r} is invalid; expected a path under {WORK_DIR}"
        )
    path = posixpath.normpath(raw if raw.startswith("/") else posixpath.join(WORK_DIR, raw))
    if not path.startswith(WORK_DIR + "/") or "\x00" in path:
        raise InvalidAPIParameters(
            f"config.mount_map.{name}: {raw!r} is invalid; expected a path under {WORK_DIR}"
        )
    return path


def parse_mounts(config: Mapping[str, Any]) -> tuple[MountRequest, ...]:
    """The mounts a ``POST /session`` config asks for (pure; names are resolved later)."""
    names = config.get("mounts") or []
    mount_map = config.get("mount_map") or config.get("mountMap") or {}
    options = config.get("mount_options") or {}
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise InvalidAPIParameters(f"config.mounts: {names!r} is invalid; expected folder names")
    if not isinstance(mount_map, dict) or not isinstance(options, dict):
        raise InvalidAPIParameters("config.mount_map and mount_options must be objects")
    names = list(dict.fromkeys([*names, *mount_map]))
    out = []
    seen: dict[str, str] = {}
    for name in names:
        path = _container_path(name, mount_map.get(name))
        if path in seen:
            raise InvalidAPIParameters(
                f"config.mount_map: folders {seen[path]!r} and {name!r} both mount at {path}"
            )
        seen[path] = name
        perm = (options.get(name) or {}).get("permission", "rw")
        if perm not in repo.PERMISSIONS:
            raise InvalidAPIParameters(
                f"config.mount_options.{name}.permission: {perm!r}; expected ro, rw or wd"
            )
        out.append(MountRequest(name, path, perm == "ro"))
    return tuple(out)


async def resolve_mounts(
    ctx: ManagerContext, caller: Caller, wanted: tuple[MountRequest, ...]
) -> list[dict[str, Any]]:
    """What the agent binds: host path, container path, mode; per folder the caller may see."""
    if not wanted:
        return []
    user = await ctx.db.run(lambda c: repo.caller_user_id(c, caller))
    out = []
    for m in wanted:
        access = await ctx.db.run(
            lambda c, name=m.name: repo.resolve_folder(c, user, caller.role, name)  # type: ignore[misc]
        )
        f = access.folder
        info = await ctx.storage.call("GET", f"/v1/folders/{f.host}/{f.id}")
        read_only = m.read_only or access.permission == "ro"
        out.append(
            {
                "name": f.name,
                "folder_id": f.id,
                "host_path": info["mount_path"],
                "container_path": m.container_path,
                "mode": "ro" if read_only else "rw",
            }
        )
    return out
