"""``backendai admin domain|project|user|keypair|policy ...``: accounts and their limits.

* ``domain list`` / ``domain add NAME [--description D] [--resource-group G ...]``
* ``project list [--domain D]`` / ``project add DOMAIN NAME [--resource-group G ...]``
* ``user list [--domain D] [--status S]`` / ``user add EMAIL [--password-env VAR] [--domain D]
  [--role R] [--project ID ...] [--username U] [--full-name N]`` (a keypair is made with it)
* ``keypair list [--email E]`` / ``keypair add EMAIL [--policy P] [--rate-limit N]
  [--resource-group G ...]``
* ``policy list`` / ``policy add NAME [--slots cpu=4,mem=8g] [--max-concurrent-sessions N]
  [--max-pending-sessions N] [--max-session-lifetime S] [--idle-timeout S]
  [--max-containers-per-session N]``

Every command calls the manager's admin GraphQL API (``/admin/gql``) and prints a
table, or the answer itself with ``--json``.  A refusal or bad input exits 1 with
the manager's message.  Passwords come from an environment variable, never argv.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from typing import Any

from ..sched.slots import ResourceSlots
from .api import APIClient, APIResponseError
from .cli_session import run_session_command
from .output import format_table, out

__all__ = ["add_account_admin_commands", "gql"]


async def gql(api: APIClient, query: str, **variables: Any) -> dict[str, Any]:
    """The ``data`` of a GraphQL answer; its first error raises :class:`APIResponseError`."""
    answer = (
        await api.request("POST", "/admin/gql", json={"query": query, "variables": variables})
    ).json()
    errors = answer.get("errors")
    if errors:
        raise APIResponseError(
            400, "graphql-error", "GraphQL error", errors[0].get("message", str(errors[0]))
        )
    data: dict[str, Any] = answer["data"]
    return data


def _mutated(data: dict[str, Any], field: str) -> dict[str, Any]:
    result: dict[str, Any] = data[field]
    if not result.get("ok"):
        raise APIResponseError(400, "invalid-api-params", "Refused", result.get("msg") or field)
    return result


def _table(
    items: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]], as_json: bool
) -> int:
    if as_json:
        out(json.dumps(list(items), indent=2))
    elif not items:
        out("Nothing to list.")
    else:
        out(format_table([h for h, _ in columns], [[i.get(k) for _, k in columns] for i in items]))
    return 0


def _show(item: dict[str, Any], as_json: bool) -> int:
    if as_json:
        out(json.dumps(item, indent=2))
    else:
        out(format_table(["FIELD", "VALUE"], list(item.items())))
    return 0


async def _domain_list(api: APIClient, args: argparse.Namespace) -> int:
    data = await gql(
        api, "query { domains { name description is_active created_at scaling_groups } }"
    )
    cols = [
        ("NAME", "name"),
        ("ACTIVE", "is_active"),
        ("RESOURCE GROUPS", "scaling_groups"),
        ("DESCRIPTION", "description"),
        ("CREATED", "created_at"),
    ]
    return _table(data["domains"], cols, args.json)


async def _domain_add(api: APIClient, args: argparse.Namespace) -> int:
    q = (
        "mutation($name: String!, $props: DomainInput!) { create_domain(name: $name, props: $props) "
        "{ ok msg domain { name description scaling_groups } } }"
    )
    props = {"description": args.description, "scaling_groups": args.resource_group}
    return _show(
        _mutated(await gql(api, q, name=args.name, props=props), "create_domain")["domain"],
        args.json,
    )


async def _project_list(api: APIClient, args: argparse.Namespace) -> int:
    q = (
        "query($d: String) { groups(domain_name: $d) { id name domain_name description "
        "resource_policy scaling_groups } }"
    )
    cols = [
        ("ID", "id"),
        ("DOMAIN", "domain_name"),
        ("NAME", "name"),
        ("POLICY", "resource_policy"),
        ("RESOURCE GROUPS", "scaling_groups"),
        ("DESCRIPTION", "description"),
    ]
    return _table((await gql(api, q, d=args.domain))["groups"], cols, args.json)


async def _project_add(api: APIClient, args: argparse.Namespace) -> int:
    q = (
        "mutation($name: String!, $props: GroupInput!) { create_group(name: $name, props: $props) "
        "{ ok msg group { id name domain_name scaling_groups } } }"
    )
    props = {
        "domain_name": args.domain,
        "description": args.description,
        "scaling_groups": args.resource_group,
    }
    return _show(
        _mutated(await gql(api, q, name=args.name, props=props), "create_group")["group"], args.json
    )


_USER_FIELDS = "uuid email username role status domain_name groups { name } main_access_key"


async def _user_list(api: APIClient, args: argparse.Namespace) -> int:
    q = f"query($d: String, $s: String) {{ users(domain_name: $d, status: $s) {{ {_USER_FIELDS} }} }}"
    users = (await gql(api, q, d=args.domain, s=args.status))["users"]
    for u in users:
        u["projects"] = ",".join(g["name"] for g in u.pop("groups"))
    cols = [
        ("EMAIL", "email"),
        ("ROLE", "role"),
        ("STATUS", "status"),
        ("DOMAIN", "domain_name"),
        ("PROJECTS", "projects"),
        ("ACCESS KEY", "main_access_key"),
        ("UUID", "uuid"),
    ]
    return _table(users, cols, args.json)


async def _user_add(api: APIClient, args: argparse.Namespace) -> int:
    password = os.environ.get(args.password_env)
    if not password:
        raise APIResponseError(
            400,
            "invalid-api-params",
            "Missing password",
            f"set the password in the environment variable {args.password_env}",
        )
    q = (
        "mutation($email: String!, $props: UserInput!) { create_user(email: $email, props: $props) "
        f"{{ ok msg user {{ {_USER_FIELDS} }} }} }}"
    )
    props = {
        "password": password,
        "domain_name": args.domain,
        "role": args.role,
        "username": args.username,
        "full_name": args.full_name,
        "group_ids": args.project,
    }
    user = _mutated(await gql(api, q, email=args.email, props=props), "create_user")["user"]
    user["groups"] = ",".join(g["name"] for g in user["groups"])
    return _show(user, args.json)


_KEYPAIR_FIELDS = (
    "access_key user_id is_active is_admin resource_policy rate_limit concurrency_used created_at"
)


async def _keypair_list(api: APIClient, args: argparse.Namespace) -> int:
    q = f"query($e: String) {{ keypairs(email: $e) {{ {_KEYPAIR_FIELDS} }} }}"
    cols = [
        ("ACCESS KEY", "access_key"),
        ("EMAIL", "user_id"),
        ("ACTIVE", "is_active"),
        ("ADMIN", "is_admin"),
        ("POLICY", "resource_policy"),
        ("RATE LIMIT", "rate_limit"),
        ("SESSIONS", "concurrency_used"),
        ("CREATED", "created_at"),
    ]
    return _table((await gql(api, q, e=args.email))["keypairs"], cols, args.json)


async def _keypair_add(api: APIClient, args: argparse.Namespace) -> int:
    q = (
        "mutation($u: String!, $props: KeyPairInput!) { create_keypair(user_id: $u, props: $props) "
        f"{{ ok msg keypair {{ {_KEYPAIR_FIELDS} secret_key }} }} }}"
    )
    props = {
        "resource_policy": args.policy,
        "rate_limit": args.rate_limit,
        "scaling_groups": args.resource_group,
    }
    return _show(
        _mutated(await gql(api, q, u=args.email, props=props), "create_keypair")["keypair"],
        args.json,
    )


_POLICY_FIELDS = (
    "name total_resource_slots max_concurrent_sessions max_pending_session_count "
    "max_session_lifetime idle_timeout max_containers_per_session"
)


async def _policy_list(api: APIClient, args: argparse.Namespace) -> int:
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
    return _table(policies, cols, args.json)


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


async def _policy_add(api: APIClient, args: argparse.Namespace) -> int:
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
    result = _mutated(
        await gql(api, q, name=args.name, props=props), "create_keypair_resource_policy"
    )
    return _show(result["resource_policy"], args.json)


def add_account_admin_commands(admin: argparse._SubParsersAction[Any]) -> None:
    """Add ``domain``, ``project``, ``user``, ``keypair`` and ``policy`` to the ``admin`` group."""

    def group(name: str, help: str) -> argparse._SubParsersAction[Any]:
        parser = admin.add_parser(name, help=help, description=help)
        sub: argparse._SubParsersAction[Any] = parser.add_subparsers(
            dest=f"admin_{name}_command", metavar="COMMAND", required=True
        )
        return sub

    def command(
        sub: argparse._SubParsersAction[Any], name: str, handler: Any, help: str
    ) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = sub.add_parser(name, help=help, description=help)
        parser.set_defaults(func=run_session_command, handler=handler)
        parser.add_argument("--json", action="store_true", help="print the manager's answer")
        return parser

    def opens(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--resource-group",
            action="append",
            default=[],
            metavar="GROUP",
            help="open this resource group to it (repeatable)",
        )

    domains = group("domain", "domains: the top of the account tree")
    command(domains, "list", _domain_list, "list domains")
    p = command(domains, "add", _domain_add, "create a domain")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--description", default="")
    opens(p)

    projects = group("project", "projects (groups) of a domain")
    p = command(projects, "list", _project_list, "list projects")
    p.add_argument("--domain", help="only this domain's")
    p = command(projects, "add", _project_add, "create a project in a domain")
    p.add_argument("domain", metavar="DOMAIN")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--description", default="")
    opens(p)

    users = group("user", "users: who may log in, with which role")
    p = command(users, "list", _user_list, "list users")
    p.add_argument("--domain", help="only this domain's")
    p.add_argument("--status", choices=["active", "inactive"])
    p = command(users, "add", _user_add, "create a user (and a keypair for it)")
    p.add_argument("email", metavar="EMAIL")
    p.add_argument(
        "--password-env",
        default="BACKENDAI_NEW_PASSWORD",
        metavar="VAR",
        help="environment variable holding the password (default: BACKENDAI_NEW_PASSWORD)",
    )
    p.add_argument("--domain", default="default")
    p.add_argument("--role", default="user", choices=["user", "admin", "superadmin"])
    p.add_argument("--username")
    p.add_argument("--full-name", default="")
    p.add_argument(
        "--project",
        action="append",
        default=[],
        metavar="PROJECT_ID",
        help="make it a member (repeatable)",
    )

    keypairs = group("keypair", "keypairs: the credentials that sign requests")
    p = command(keypairs, "list", _keypair_list, "list keypairs")
    p.add_argument("--email", help="only this user's")
    p = command(keypairs, "add", _keypair_add, "create a keypair for a user")
    p.add_argument("email", metavar="EMAIL")
    p.add_argument("--policy", default="default", help="keypair resource policy")
    p.add_argument(
        "--rate-limit", type=int, default=0, help="requests per window (0: the manager's default)"
    )
    opens(p)

    policies = group("policy", "keypair resource policies: what a keypair may hold")
    command(policies, "list", _policy_list, "list keypair resource policies")
    p = command(policies, "add", _policy_add, "create a keypair resource policy")
    p.add_argument("name", metavar="NAME")
    p.add_argument(
        "--slots", type=_slots, help="total slots, e.g. cpu=4,mem=8g (default: unlimited)"
    )
    p.add_argument("--max-concurrent-sessions", type=int)
    p.add_argument("--max-pending-sessions", type=int)
    p.add_argument("--max-session-lifetime", type=int, metavar="SECONDS")
    p.add_argument("--idle-timeout", type=int, metavar="SECONDS")
    p.add_argument("--max-containers-per-session", type=int)
