"""``backendai admin policy ...``: keypair, user and project resource policies.

* ``policy list [--for keypair|user|project]``
* ``policy add NAME [--slots cpu=4,mem=8g] [--max-concurrent-sessions N]
  [--max-pending-sessions N] [--max-session-lifetime S] [--idle-timeout S]
  [--max-containers-per-session N]``: a keypair policy
* ``policy add NAME --for user|project [--max-vfolder-count N] [--max-quota-scope-size BYTES]``
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from ..sched.slots import ResourceSlots
from .api import APIClient, APIResponseError
from .cli_accounts_base import gql, mutated, show, table

__all__ = ["add_policy_commands"]

_FOLDER_FIELDS = "name max_vfolder_count max_quota_scope_size created_at"


_POLICY_FIELDS = (
    "name total_resource_slots max_concurrent_sessions max_pending_session_count "
    "max_session_lifetime idle_timeout max_containers_per_session"
)


async def _keypair_policy_list(api: APIClient, args: argparse.Namespace) -> int:
    policies = (await gql(api, f"query {{ keypair_resource_policies {{ {_POLICY_FIELDS} }} }}"))[
        "keypair_resource_policies"
    ]
    for p in policies:
        p["total_resource_slots"] = (
            ResourceSlots.from_json(json.loads(p["total_resource_slots"])).human() or "-"
        )
    cols = [
        ("NAME", "name"),
        ("SLOTS", "total_resource_slots"),
        ("CONCURRENT", "max_concurrent_sessions"),
        ("PENDING", "max_pending_session_count"),
        ("LIFETIME S", "max_session_lifetime"),
        ("IDLE S", "idle_timeout"),
        ("CONTAINERS", "max_containers_per_session"),
    ]
    return table(policies, cols, args.json)


def _slots(text: str) -> str:
    """``cpu=4,mem=8g`` -> the JSON the API takes; a bad pair names itself."""
    pairs = {}
    for part in filter(None, text.split(",")):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise argparse.ArgumentTypeError(
                f"invalid slot {part!r}; expected SLOT=AMOUNT such as cpu=4 or mem=8g"
            )
        pairs[key.strip()] = value.strip()
    return json.dumps(pairs)


async def _keypair_policy_add(api: APIClient, args: argparse.Namespace) -> int:
    q = (
        "mutation($name: String!, $props: CreateKeyPairResourcePolicyInput!) { "
        f"create_keypair_resource_policy(name: $name, props: $props) {{ ok msg resource_policy {{ {_POLICY_FIELDS} }} }} }}"
    )
    props = {
        "total_resource_slots": args.slots,
        "max_concurrent_sessions": args.max_concurrent_sessions,
        "max_pending_session_count": args.max_pending_sessions,
        "max_session_lifetime": args.max_session_lifetime,
        "idle_timeout": args.idle_timeout,
        "max_containers_per_session": args.max_containers_per_session,
    }
    result = mutated(
        await gql(api, q, name=args.name, props=props), "create_keypair_resource_policy"
    )
    return show(result["resource_policy"], args.json)


async def _policy_list(api: APIClient, args: argparse.Namespace) -> int:
    if args.kind == "keypair":
        return await _keypair_policy_list(api, args)
    field = f"{args.kind}_resource_policies"
    policies = (await gql(api, f"query {{ {field} {{ {_FOLDER_FIELDS} }} }}"))[field]
    cols = [
        ("NAME", "name"),
        ("MAX FOLDERS", "max_vfolder_count"),
        ("MAX QUOTA BYTES", "max_quota_scope_size"),
        ("CREATED", "created_at"),
    ]
    return table(policies, cols, args.json)


async def _policy_add(api: APIClient, args: argparse.Namespace) -> int:
    keypair_only = {
        "--slots": args.slots,
        "--max-concurrent-sessions": args.max_concurrent_sessions,
        "--max-pending-sessions": args.max_pending_sessions,
        "--max-session-lifetime": args.max_session_lifetime,
        "--idle-timeout": args.idle_timeout,
        "--max-containers-per-session": args.max_containers_per_session,
    }
    folder_only = {
        "--max-vfolder-count": args.max_vfolder_count,
        "--max-quota-scope-size": args.max_quota_scope_size,
    }
    wrong = folder_only if args.kind == "keypair" else keypair_only
    misplaced = [flag for flag, value in wrong.items() if value is not None]
    if misplaced:
        raise APIResponseError(
            400,
            "invalid-api-params",
            "Bad option",
            f"{', '.join(misplaced)}: not an option of a {args.kind} resource policy",
        )
    if args.kind == "keypair":
        return await _keypair_policy_add(api, args)
    field = f"create_{args.kind}_resource_policy"
    q = (
        f"mutation($name: String!, $props: FolderPolicyInput!) {{ {field}(name: $name, "
        f"props: $props) {{ ok msg resource_policy {{ {_FOLDER_FIELDS} }} }} }}"
    )
    props = {
        "max_vfolder_count": args.max_vfolder_count,
        "max_quota_scope_size": args.max_quota_scope_size,
    }
    return show(
        mutated(await gql(api, q, name=args.name, props=props), field)["resource_policy"], args.json
    )


def add_policy_commands(
    policies: argparse._SubParsersAction[Any],
    command: Callable[..., argparse.ArgumentParser],
) -> None:
    """``list`` and ``add`` under the ``policy`` group; *command* makes one subcommand."""
    kinds = ["keypair", "user", "project"]
    p = command(policies, "list", _policy_list, "list resource policies")
    p.add_argument("--for", dest="kind", choices=kinds, default="keypair")
    p = command(policies, "add", _policy_add, "create a resource policy")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--for", dest="kind", choices=kinds, default="keypair")
    p.add_argument("--slots", type=_slots, help="keypair: total slots, e.g. cpu=4,mem=8g")
    p.add_argument("--max-concurrent-sessions", type=int)
    p.add_argument("--max-pending-sessions", type=int)
    p.add_argument("--max-session-lifetime", type=int, metavar="SECONDS")
    p.add_argument("--idle-timeout", type=int, metavar="SECONDS")
    p.add_argument("--max-containers-per-session", type=int)
    p.add_argument("--max-vfolder-count", type=int, help="user or project: folders it may own")
    p.add_argument("--max-quota-scope-size", type=int, metavar="BYTES", help="user or project")
