"""``backendai app SESSION APP``: start an app of a session and print where to open it.

The URL carries a short-lived token: the app proxy exchanges it for a cookie
for that app alone.  ``backendai app SESSION --list`` lists what the session's
image offers.  Exit codes as for ``backendai session``.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from .api import APIClient
from .cli_session import run_session_command
from .output import format_table, out

__all__ = ["add_app_commands"]


async def _app(api: APIClient, args: argparse.Namespace) -> int:
    if args.list or not args.app:
        apps = (await api.request("GET", f"/stream/session/{args.session}/apps")).json()
        if args.json:
            out(json.dumps(apps))
        else:
            rows = [[a["name"], a["protocol"], a.get("url", "")] for a in apps]
            out(format_table(["APP", "PROTOCOL", "URL"], rows))
        return 0
    body: dict[str, Any] = {"app": args.app}
    if args.port:
        body["port"] = args.port
    started = (
        await api.request("POST", f"/session/{args.session}/start-service", json=body)
    ).json()
    if args.json:
        out(json.dumps(started))
    else:
        out(f"{args.app} of session {args.session} is open at (the link logs you in once):")
        out(f"  {started['url']}")
    return 0


def add_app_commands(subparsers: argparse._SubParsersAction[Any]) -> None:
    p = subparsers.add_parser(
        "app",
        help="start an app of a session (jupyter, ...) and print its URL",
        description="Start APP in SESSION and print its URL on the app proxy; without APP "
        "(or with --list), list the apps the session offers.",
    )
    p.add_argument("session", metavar="SESSION", help="session name or UUID")
    p.add_argument("app", metavar="APP", nargs="?", help="app name, e.g. jupyter")
    p.add_argument("--list", action="store_true", help="list the apps of the session")
    p.add_argument("--port", type=int, help="port for the app inside the session (default: any)")
    p.add_argument("--json", action="store_true", help="print the manager's answer as JSON")
    p.set_defaults(func=run_session_command, handler=_app)
