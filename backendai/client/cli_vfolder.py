"""``backendai vfolder create|ls|upload|download|rm|share``: virtual folders from the shell.

Thin: parse, call the manager's ``/folders`` routes and the storage proxy
(through :mod:`.transfers`), print.  Uploads and downloads resume what an
interrupted run left.  Exit codes as for ``backendai session``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable
from pathlib import Path, PurePosixPath
from typing import Any

import trio

from .api import APIClient
from .cli_session import command_group
from .output import err, format_table, out
from .transfers import download_file, upload_file

__all__ = ["add_vfolder_commands"]

Handler = Callable[[APIClient, argparse.Namespace], Awaitable[int]]


async def _create(api: APIClient, args: argparse.Namespace) -> int:
    body = {
        "name": args.name,
        "host": args.host,
        "group": args.group,
        "permission": args.permission,
        "quota": args.quota,
        "cloneable": args.cloneable,
    }
    made = (await api.request("POST", "/folders", json=body)).json()
    out(f"Folder {made['name']} ({made['id']}) created on {made['host']}.")
    return 0


async def _ls(api: APIClient, args: argparse.Namespace) -> int:
    if args.name is None:
        folders = (await api.request("GET", "/folders")).json()
        rows = [
            [f["name"], f["host"], f["permission"], "yes" if f["is_owner"] else "no", f["type"]]
            for f in folders
        ]
        out(format_table(["name", "host", "permission", "owner", "type"], rows))
        return 0
    params = {"path": args.path}
    items = (await api.request("GET", f"/folders/{args.name}/files", params=params)).json()
    if args.json:
        out(json.dumps(items["items"], indent=2))
        return 0
    rows = [[i["name"], i["type"].lower(), str(i["size"]), i["mode"]] for i in items["items"]]
    out(format_table(["name", "type", "size", "mode"], sorted(rows)))
    return 0


async def _upload(api: APIClient, args: argparse.Namespace) -> int:
    for raw in args.files:
        local = Path(raw)
        if not await trio.Path(local).is_file():
            err(f"error: {raw}: not a file (for a directory, upload its files)")
            return 2
        remote = str(PurePosixPath(args.dst or ".") / local.name)
        await upload_file(api, args.name, local, remote)
    return 0


async def _download(api: APIClient, args: argparse.Namespace) -> int:
    dest = Path(args.dest)
    for remote in args.paths:
        name = PurePosixPath(remote).name or args.name
        local = dest / (f"{name}.zip" if args.archive else name)
        await download_file(api, args.name, remote, local, archive=args.archive)
    return 0


async def _rm(api: APIClient, args: argparse.Namespace) -> int:
    if args.paths:
        body: dict[str, Any] = {"files": args.paths, "recursive": args.recursive}
        await api.request("DELETE", f"/folders/{args.name}/delete-files", json=body)
        out(f"Deleted {len(args.paths)} path(s) from {args.name}.")
    else:
        await api.request("DELETE", f"/folders/{args.name}")
        out(f"Folder {args.name} deleted.")
    return 0


async def _share(api: APIClient, args: argparse.Namespace) -> int:
    body = {"permission": args.permission, "emails": args.users}
    await api.request("POST", f"/folders/{args.name}/share", json=body)
    out(f"Folder {args.name} shared with {', '.join(args.users)} ({args.permission}).")
    return 0


def add_vfolder_commands(subparsers: argparse._SubParsersAction[Any]) -> None:
    _, command = command_group(subparsers, "vfolder", "virtual folders: create, move files, share")

    p = command("create", _create, "create a virtual folder")
    p.add_argument("name")
    p.add_argument("--host", help="storage volume (default: the manager's default)")
    p.add_argument("--group", help="project that owns it (default: you)")
    p.add_argument("--permission", choices=["ro", "rw", "wd"], default="rw")
    p.add_argument("--quota", default="0", help="size limit, e.g. 10g (0: none)")
    p.add_argument("--cloneable", action="store_true")
    p = command("ls", _ls, "list your folders, or the files in one")
    p.add_argument("name", nargs="?")
    p.add_argument("path", nargs="?", default="")
    p.add_argument("--json", action="store_true")
    p = command("upload", _upload, "upload files (resumes an interrupted upload)")
    p.add_argument("name")
    p.add_argument("files", nargs="+")
    p.add_argument("--dst", help="directory in the folder (default: its top)")
    p = command("download", _download, "download files (resumes a .part left behind)")
    p.add_argument("name")
    p.add_argument("paths", nargs="+")
    p.add_argument("--dest", default=".", help="local directory (default: here)")
    p.add_argument("--archive", action="store_true", help="a directory as a zip")
    p = command("rm", _rm, "delete a folder, or paths in it")
    p.add_argument("name")
    p.add_argument("paths", nargs="*")
    p.add_argument("-r", "--recursive", action="store_true")
    p = command("share", _share, "give users access to a folder")
    p.add_argument("name")
    p.add_argument("users", nargs="+", help="user ids (emails)")
    p.add_argument("--permission", choices=["ro", "rw", "wd"], default="ro")
