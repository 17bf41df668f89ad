"""``backendai admin domain|project|user|keypair|policy ...``: accounts and their limits.

* ``domain list`` / ``domain add NAME [--description D] [--resource-group G ...]``
* ``project list [--domain D]`` / ``project add DOMAIN NAME [--resource-group G ...]``
* ``user list [--domain D] [--status S]`` / ``user add EMAIL [--password-env VAR] [--domain D]
  [--role R] [--project ID ...] [--username U] [--full-name N]`` (a keypair is made with it)
* ``keypair list [--email E]`` / ``keypair add EMAIL [--policy P] [--rate-limit N]
  [--resource-group G ...]``
* ``policy list|add ...``: resource policies (see :mod:`cli_policies`)

Every command calls the manager's admin GraphQL API (``/admin/gql``) and prints a
table, or the answer itself with ``--json``.  A refusal or bad input exits 1 with
the manager's message.  Passwords come from an environment variable, never argv.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from .api import APIClient, APIResponseError
from .cli_accounts_base import gql, mutated, show, table
from .cli_policies import add_policy_commands
from .cli_session import subcommand, subcommand_group

__all__ = ["add_account_admin_commands"]


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
    return table(data["domains"], cols, args.json)


async def _domain_add(api: APIClient, args: argparse.Namespace) -> int:
    q = (
        "mutation($name: String!, $props: DomainInput!) { create_domain(name: $name, props: $props) "
        "{ ok msg domain { name description scaling_groups } } }"
    )
    props = {"description": args.description, "scaling_groups": args.resource_group}
    return show(
        mutated(await gql(api, q, name=args.name, props=props), "create_domain")["domain"],
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
    return table((await gql(api, q, d=args.domain))["groups"], cols, args.json)


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
    return show(
        mutated(await gql(api, q, name=args.name, props=props), "create_group")["group"], args.json
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
    return table(users, cols, args.json)


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
    user = mutated(await gql(api, q, email=args.email, props=props), "create_user")["user"]
    user["groups"] = ",".join(g["name"] for g in user["groups"])
    return show(user, args.json)


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
    return table((await gql(api, q, e=args.email))["keypairs"], cols, args.json)


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
    return show(
        mutated(await gql(api, q, u=args.email, props=props), "create_keypair")["keypair"],
        args.json,
    )


def add_account_admin_commands(admin: argparse._SubParsersAction[Any]) -> None:
    """Add ``domain``, ``project``, ``user``, ``keypair`` and ``policy`` to the ``admin`` group."""

    def group(name: str, help: str) -> argparse._SubParsersAction[Any]:
        return subcommand_group(admin, name, help, dest_prefix="admin_")

    def command(
        sub: argparse._SubParsersAction[Any], name: str, handler: Any, help: str
    ) -> argparse.ArgumentParser:
        parser = subcommand(sub, name, handler, help)
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

    add_policy_commands(
        group("policy", "resource policies: what a keypair, user or project may hold"), command
    )
