"""``backendai admin registry add|list|rm|rescan`` and ``backendai admin image
list|rescan|alias|unalias|forget`` (superadmin).

Thin: parse, call the manager's ``/admin/registries`` and ``/admin/images`` routes, print.
A registry password comes from standard input (``--password-stdin``) or the environment
variable ``BACKENDAI_REGISTRY_PASSWORD``, never from the command line.  Exit codes as for
``backendai session``: 1 the manager refused, 69 unreachable, 78 bad client configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from .api import APIClient
from .cli_session import subcommand, subcommand_group
from .output import err, format_table, out

__all__ = ["PASSWORD_ENV", "add_image_admin_commands"]

PASSWORD_ENV = "BACKENDAI_REGISTRY_PASSWORD"
EXIT_USAGE = 2

Handler = Callable[[APIClient, argparse.Namespace], Awaitable[int]]


def _dump(value: Any) -> None:
    out(json.dumps(value, indent=2, default=str))


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return os.environ.get(PASSWORD_ENV, "")


async def _registry_add(api: APIClient, args: argparse.Namespace) -> int:
    password = _password(args) if args.username else ""
    if args.username and not password:
        err(
            f"error: --username {args.username} needs a password: --password-stdin or {PASSWORD_ENV}"
        )
        return EXIT_USAGE
    body = {
        "name": args.name,
        "url": args.url,
        "type": args.type,
        "project": args.project,
        "username": args.username,
        "password": password,
        "check": not args.no_check,
    }
    added = (await api.request("POST", "/admin/registries", json=body)).json()
    if args.json:
        _dump(added)
    else:
        out(f"Registry {added['name']} ({added['type']}, {added['url']}) registered.")
    return 0


async def _registry_list(api: APIClient, args: argparse.Namespace) -> int:
    rows = (await api.request("GET", "/admin/registries")).json()["registries"]
    if args.json:
        _dump(rows)
    elif not rows:
        out("No registries.")
    else:
        headers = ["NAME", "TYPE", "URL", "PROJECT", "USERNAME", "IMAGES"]
        keys = ["name", "type", "url", "project", "username", "images"]
        out(format_table(headers, [[r[k] for k in keys] for r in rows]))
    return 0


async def _registry_rm(api: APIClient, args: argparse.Namespace) -> int:
    path = f"/admin/registries/{quote(args.name, safe='')}"
    result = (await api.request("DELETE", path)).json()
    out(f"Registry {args.name} forgotten with {result['removedImages']} image(s).")
    return 0


def _print_rescan(results: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        _dump(results)
        return
    for r in results:
        out(
            f"{r['registry']}: {r['images']} image(s); {r['added']} added, "
            f"{r['updated']} updated, {r['removed']} removed, {len(r['skipped'])} skipped"
        )
        for line in r["skipped"]:
            out(f"  skipped {line}")


async def _registry_rescan(api: APIClient, args: argparse.Namespace) -> int:
    path = f"/admin/registries/{quote(args.name, safe='')}/rescan"
    _print_rescan((await api.request("POST", path)).json()["results"], args.json)
    return 0


async def _image_rescan(api: APIClient, args: argparse.Namespace) -> int:
    body = {"registry": args.registry} if args.registry else {}
    _print_rescan(
        (await api.request("POST", "/admin/images/rescan", json=body)).json()["results"], args.json
    )
    return 0


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB"):
        if value < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


async def _image_list(api: APIClient, args: argparse.Namespace) -> int:
    params = {
        k: v for k, v in (("registry", args.registry), ("architecture", args.architecture)) if v
    }
    rows = (await api.request("GET", "/admin/images", params=params)).json()["images"]
    if args.json:
        _dump(rows)
    elif not rows:
        out("No images.")
    else:
        headers = ["NAME", "ARCH", "REGISTRY", "DIGEST", "SIZE", "MIN RESOURCES", "ALIASES"]
        table = [
            [
                r["name"],
                r["architecture"],
                r["registry"] or "(agents)",
                r["digest"][:19],
                _size(int(r["sizeBytes"])),
                " ".join(f"{k}={v}" for k, v in r["resourceLimits"].items()),
                ",".join(r["aliases"]),
            ]
            for r in rows
        ]
        out(format_table(headers, table))
    return 0


async def _image_alias(api: APIClient, args: argparse.Namespace) -> int:
    body = {"alias": args.alias, "target": args.target}
    result = (await api.request("POST", "/admin/images/alias", json=body)).json()
    out(f"{result['alias']} -> {result['target']}")
    return 0


async def _image_unalias(api: APIClient, args: argparse.Namespace) -> int:
    await api.request("DELETE", f"/admin/images/alias/{quote(args.alias, safe='/')}")
    out(f"Alias {args.alias} removed.")
    return 0


async def _image_forget(api: APIClient, args: argparse.Namespace) -> int:
    params = {"name": args.name}
    if args.architecture:
        params["architecture"] = args.architecture
    result = (await api.request("DELETE", "/admin/images", params=params)).json()
    out(f"Image {result['name']} forgotten ({result['removed']} architecture(s)).")
    return 0


def add_image_admin_commands(admin: argparse._SubParsersAction[Any]) -> None:
    """Add ``registry`` and ``image`` under the ``admin`` subcommand group."""

    def group(name: str, help: str) -> argparse._SubParsersAction[Any]:
        return subcommand_group(admin, name, help, dest_prefix="admin_")

    command = subcommand

    registry = group("registry", "container registries the agents pull kernel images from")
    p = command(
        registry, "add", _registry_add, "register a Docker Registry v2 or a Harbor v2 project"
    )
    p.add_argument("name", help="a short name for it, e.g. local")
    p.add_argument("url", help="http(s)://HOST[:PORT], e.g. http://127.0.0.1:5000")
    p.add_argument("--type", choices=["docker", "harbor"], default="docker")
    p.add_argument("--project", default="", help="repository namespace (required for Harbor)")
    p.add_argument("--username", default="", help="account to log in with")
    p.add_argument(
        "--password-stdin",
        action="store_true",
        help=f"read the password from standard input (else from {PASSWORD_ENV})",
    )
    p.add_argument("--no-check", action="store_true", help="register without asking the registry")
    p.add_argument("--json", action="store_true", help="print JSON")
    p = command(registry, "list", _registry_list, "list registries")
    p.add_argument("--json", action="store_true", help="print JSON")
    p = command(registry, "rm", _registry_rm, "forget a registry and the images scanned from it")
    p.add_argument("name")
    p = command(registry, "rescan", _registry_rescan, "read a registry's images into the catalog")
    p.add_argument("name")
    p.add_argument("--json", action="store_true", help="print JSON")

    image = group("image", "the image catalog")
    p = command(image, "list", _image_list, "list the images in the catalog")
    p.add_argument("--registry", help="only this registry's images")
    p.add_argument("--architecture", help="only this architecture, e.g. x86_64")
    p.add_argument("--json", action="store_true", help="print JSON")
    p = command(image, "rescan", _image_rescan, "rescan every registry (or one)")
    p.add_argument("registry", nargs="?", help="only this registry")
    p.add_argument("--json", action="store_true", help="print JSON")
    p = command(image, "alias", _image_alias, "give an image another name")
    p.add_argument("alias")
    p.add_argument("target", help="the image it stands for")
    p = command(image, "unalias", _image_unalias, "remove an alias")
    p.add_argument("alias")
    p = command(image, "forget", _image_forget, "remove an image from the catalog")
    p.add_argument("name")
    p.add_argument("--architecture", help="only this architecture (default: all)")
