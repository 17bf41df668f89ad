"""``backendai admin resource-group list|add|update`` (superadmin).

    backendai admin resource-group list [--json]
    backendai admin resource-group add NAME [--sequencer drf] [--selector concentrated]
        [--option hol_blocking=true] [--option keypair_limits.max_concurrent_sessions=4]
    backendai admin resource-group update NAME [--sequencer ...] [--option preemption=requeue]

``--option KEY=VALUE`` sets one option (dotted keys reach into objects; VALUE is
JSON where it parses, else a string; ``null`` removes the key) on top of the
group's current options; ``--options JSON`` replaces them all.  Thin: parse,
call the manager's ``/admin/resource-groups`` routes, print.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from ..sched.slots import ResourceSlots
from .api import APIClient
from .cli_session import run_session_command
from .output import format_kv, format_table, out

__all__ = ["add_group_admin_commands", "apply_option"]

Handler = Callable[[APIClient, argparse.Namespace], Awaitable[int]]


def _option(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return key, value


def _options_json(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"--options: not JSON ({e})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"--options: {text!r} is not a JSON object")
    return value


def apply_option(options: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """*options* with dotted *key* set to *value* (None removes it); a new dict."""
    out_ = json.loads(json.dumps(options))
    *path, last = key.split(".")
    node = out_
    for part in path:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    if value is None:
        node.pop(last, None)
    else:
        node[last] = value
    return dict(out_)


def _body(args: argparse.Namespace, current: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if args.sequencer:
        body["sequencer"] = args.sequencer
    if args.selector:
        body["agentSelector"] = args.selector
    if args.description is not None:
        body["description"] = args.description
    if args.active is not None:
        body["isActive"] = args.active
    if args.options is not None or args.option:
        options = args.options if args.options is not None else current
        for key, value in args.option:
            options = apply_option(options, key, value)
        body["options"] = options
    return body


def _show(group: dict[str, Any], as_json: bool) -> None:
    if as_json:
        out(json.dumps(group, indent=2))
        return
    out(
        format_kv(
            {
                "name": group["name"],
                "active": group["isActive"],
                "sequencer": group["sequencer"],
                "agent selector": group["agentSelector"],
                "options": group["options"],
                "agents": group["agents"],
                "capacity": ResourceSlots.from_json(group["capacity"]).human(),
                "occupied": ResourceSlots.from_json(group["occupied"]).human(),
                "pending sessions": group["pending"],
                "description": group["description"],
            }
        )
    )


async def _list(api: APIClient, args: argparse.Namespace) -> int:
    groups = (await api.request("GET", "/admin/resource-groups")).json()["resourceGroups"]
    if args.json:
        out(json.dumps(groups, indent=2))
        return 0
    rows = [
        [
            g["name"],
            "yes" if g["isActive"] else "no",
            g["sequencer"],
            g["agentSelector"],
            g["agents"],
            ResourceSlots.from_json(g["occupied"]).human(),
            ResourceSlots.from_json(g["capacity"]).human(),
            g["pending"],
            g["options"],
        ]
        for g in groups
    ]
    headers = ["NAME", "ACTIVE", "SEQUENCER", "SELECTOR", "AGENTS", "OCCUPIED", "CAPACITY"]
    out(format_table([*headers, "PENDING", "OPTIONS"], rows))
    return 0


async def _add(api: APIClient, args: argparse.Namespace) -> int:
    body = {"name": args.name, **_body(args, {})}
    group = (await api.request("POST", "/admin/resource-groups", json=body)).json()
    _show(group["resourceGroup"], args.json)
    return 0


async def _update(api: APIClient, args: argparse.Namespace) -> int:
    path = f"/admin/resource-groups/{quote(args.name, safe='')}"
    current: dict[str, Any] = {}
    if args.option and args.options is None:
        current = (await api.request("GET", path)).json()["resourceGroup"]["options"]
    group = (await api.request("PATCH", path, json=_body(args, current))).json()
    _show(group["resourceGroup"], args.json)
    return 0


def add_group_admin_commands(admin: argparse._SubParsersAction[Any]) -> None:
    """Add ``resource-group`` with ``list``, ``add``, ``update`` to the ``admin`` group."""
    group = admin.add_parser(
        "resource-group",
        help="resource groups and their scheduling policy",
        description="resource groups and their scheduling policy",
    )
    commands = group.add_subparsers(dest="admin_group_command", metavar="COMMAND", required=True)

    def command(name: str, handler: Handler, help: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = commands.add_parser(name, help=help, description=help)
        parser.set_defaults(func=run_session_command, handler=handler)
        parser.add_argument("--json", action="store_true", help="print the manager's answer")
        return parser

    command("list", _list, "list resource groups: policy, agents, occupancy, queue")
    for name, handler, help in (
        ("add", _add, "create a resource group"),
        ("update", _update, "change a resource group's policy or options"),
    ):
        p = command(name, handler, help)
        p.add_argument("name", metavar="NAME", help="resource group name")
        p.add_argument("--sequencer", help="fifo, lifo, drf, fair-share, or a plugin's name")
        p.add_argument(
            "--selector", help="concentrated, dispersed, roundrobin, first-fit, or a plugin's"
        )
        p.add_argument("--description")
        active = p.add_mutually_exclusive_group()
        active.add_argument("--active", dest="active", action="store_const", const=True)
        active.add_argument("--inactive", dest="active", action="store_const", const=False)
        p.add_argument(
            "--option",
            action="append",
            type=_option,
            default=[],
            metavar="KEY=VALUE",
            help="set one option, repeatable: --option hol_blocking=true",
        )
        p.add_argument("--options", type=_options_json, help="replace every option (JSON)")
