"""``backendai session create|info|list|logs|destroy|events``.

Thin: parse, call :class:`~backendai.client.api.APIClient`, print.  Exit codes:
0 done, 1 the manager refused (its problem title and message on stderr), 2 usage,
69 the manager cannot be reached, 78 the client configuration (BACKEND_*) is wrong.
"""

from __future__ import annotations

import argparse
import json
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx
import trio

from backendai.errors import ConfigError, UnavailableError

from .api import APIClient, APIResponseError, ClientConfig
from .output import err, format_kv, format_table, out

__all__ = ["add_session_commands", "command_group", "run_session_command"]

EXIT_API_ERROR = 1
EXIT_UNAVAILABLE = 69
EXIT_CONFIG = 78
EXIT_INTERRUPTED = 130

Handler = Callable[[APIClient, argparse.Namespace], Awaitable[int]]


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key, value


def _dump(value: Any) -> None:
    out(json.dumps(value, indent=2, default=str))


def _first(item: Mapping[str, Any], *keys: str) -> Any:
    return next((item[k] for k in keys if item.get(k) not in (None, "")), None)


async def _create(api: APIClient, args: argparse.Namespace) -> int:
    result = await api.create_session(
        args.image,
        args.name,
        type=args.type,
        resources=dict(args.resources),
        environ=dict(args.environ),
        enqueue_only=args.enqueue_only,
        max_wait=args.max_wait,
        startup_command=args.startup_command,
        tag=args.tag,
        priority=args.priority,
        preemptible=args.preemptible or None,
        dependencies=args.depends_on or None,
        starts_at=args.starts_at,
    )
    if args.json:
        _dump(result)
        return 0
    name, status = result.get("sessionName", args.name), result.get("status", "?")
    out(f"Session {name} ({result.get('sessionId', '?')}) is {status}.")
    if status == "TIMEOUT":
        out(
            f"It did not start within {args.max_wait:g} s and may still start; "
            f"see `backendai session info {name}`."
        )
    return 0


async def _info(api: APIClient, args: argparse.Namespace) -> int:
    info = await api.get_session(args.id)
    if args.json:
        _dump(info)
    else:
        out(format_kv(info))
    return 0


_LIST_COLUMNS = (
    ("SESSION ID", ("sessionId", "id")),
    ("NAME", ("sessionName", "name")),
    ("STATUS", ("status",)),
    ("IMAGE", ("image",)),
    ("TYPE", ("type", "sessionType")),
    ("CREATED", ("createdAt", "creationTime", "created_at")),
)


async def _list(api: APIClient, args: argparse.Namespace) -> int:
    sessions = await api.list_sessions(args.status, all=args.all)
    if args.json:
        _dump(sessions)
    elif not sessions:
        out("No sessions.")
    else:
        rows = [[_first(s, *keys) for _, keys in _LIST_COLUMNS] for s in sessions]
        out(format_table([title for title, _ in _LIST_COLUMNS], rows))
    return 0


async def _logs(api: APIClient, args: argparse.Namespace) -> int:
    logs = await api.get_logs(args.id)
    out(logs.removesuffix("\n"))
    return 0


async def _destroy(api: APIClient, args: argparse.Namespace) -> int:
    await api.destroy_session(args.id, forced=args.forced)
    out(f"Session {args.id} is being {'force-' if args.forced else ''}terminated.")
    return 0


def _describe_event(data: str) -> str:
    try:
        payload = json.loads(data)
    except ValueError:
        return data
    if not isinstance(payload, dict):
        return data
    shown = (("sessionName", "session"), ("sessionId", "id"), ("reason", "reason"))
    parts = [f"{label}={payload[key]}" for key, label in shown if payload.get(key)]
    if payload.get("exitCode") is not None:
        parts.append(f"exit={payload['exitCode']}")
    progress = payload.get("progress")
    if isinstance(progress, dict):  # an image pull (session_pulling)
        parts.append(
            f"layers={progress.get('layersDone')}/{progress.get('layersTotal')} "
            f"MB={progress.get('bytesDone', 0) / 1e6:.1f}/{progress.get('bytesTotal', 0) / 1e6:.1f}"
        )
    return " ".join(parts)


def _name_or_uuid(ident: str | None) -> tuple[str | None, str | None]:
    try:
        return None, str(uuid.UUID(ident or ""))
    except ValueError:
        return ident, None


async def _events(api: APIClient, args: argparse.Namespace) -> int:
    name, session_id = _name_or_uuid(args.id)
    async with api.stream_events(name, session_id, scope=args.scope) as events:
        async for event in events:
            if args.json:
                out(json.dumps({"event": event.event, "data": event.data}))
            else:
                out(f"{event.event:<22}  {_describe_event(event.data)}".rstrip())
    return 0


def run_session_command(
    args: argparse.Namespace,
    *,
    env: Mapping[str, str] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> int:
    """Run the handler of a parsed ``session`` subcommand; return the exit code."""
    handler: Handler = args.handler

    async def main(config: ClientConfig) -> int:
        async with APIClient.from_config(config, transport=transport) as api:
            return await handler(api, args)

    try:
        return trio.run(main, ClientConfig.from_env(env))
    except ConfigError as e:
        err(f"error: {e}")
        return EXIT_CONFIG
    except UnavailableError as e:
        err(f"error: {e}")
        return EXIT_UNAVAILABLE
    except APIResponseError as e:
        err(f"error: {e}")
        return EXIT_API_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def subcommand_group(
    parent: argparse._SubParsersAction[Any], name: str, help: str, *, dest_prefix: str = ""
) -> argparse._SubParsersAction[Any]:
    """A group ``name`` under *parent* whose subcommands are required."""
    parser = parent.add_parser(name, help=help, description=help)
    sub: argparse._SubParsersAction[Any] = parser.add_subparsers(
        dest=f"{dest_prefix}{name}_command", metavar="COMMAND", required=True
    )
    return sub


def subcommand(
    sub: argparse._SubParsersAction[Any], name: str, handler: Any, help: str
) -> argparse.ArgumentParser:
    """A subcommand that runs *handler* with an API client (see run_session_command)."""
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help, description=help)
    parser.set_defaults(func=run_session_command, handler=handler)
    return parser


def command_group(
    subparsers: argparse._SubParsersAction[Any], name: str, help: str
) -> tuple[argparse._SubParsersAction[Any], Callable[[str, Handler, str], argparse.ArgumentParser]]:
    """A client command group (``session``, ``vfolder``): its subparsers, and a maker of
    subcommands that run their handler with an API client."""
    group = subparsers.add_parser(name, help=help)
    commands: argparse._SubParsersAction[Any] = group.add_subparsers(
        dest=f"{name}_command", metavar="COMMAND", required=True
    )

    def command(name: str, handler: Handler, help: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = commands.add_parser(name, help=help, description=help)
        parser.set_defaults(func=run_session_command, handler=handler)
        return parser

    return commands, command


def add_session_commands(
    subparsers: argparse._SubParsersAction[Any],
) -> argparse._SubParsersAction[Any]:
    """Add ``session`` and its subcommands (returned, for more); each sets ``func(args) -> exit code``."""
    commands, command = command_group(
        subparsers, "session", "create, inspect and destroy compute sessions"
    )

    p = command("create", _create, "start a compute session")
    p.add_argument("image", metavar="IMAGE", help="kernel image, e.g. python:3.11-ubuntu22.04")
    p.add_argument("--name", help="session name (generated if omitted)")
    p.add_argument("--type", choices=["interactive", "batch"], default="interactive")
    p.add_argument(
        "-r",
        "--resource",
        dest="resources",
        action="append",
        type=_key_value,
        default=[],
        metavar="SLOT=AMOUNT",
        help="requested resource, repeatable: -r cpu=2 -r mem=4g",
    )
    p.add_argument(
        "-e",
        "--env",
        dest="environ",
        action="append",
        type=_key_value,
        default=[],
        metavar="KEY=VALUE",
        help="environment variable in the session, repeatable",
    )
    p.add_argument("--enqueue-only", action="store_true", help="return once queued")
    p.add_argument(
        "--max-wait",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how long the manager waits for the session to run (default: 60)",
    )
    p.add_argument("--startup-command", metavar="CMD", help="command run once the session starts")
    p.add_argument("--tag", help="free-form annotation")
    p.add_argument("--priority", type=int, help="higher starts first (default 0)")
    p.add_argument(
        "--preemptible", action="store_true", help="a higher-priority session may stop this one"
    )
    p.add_argument(
        "--depends-on",
        action="append",
        default=[],
        metavar="SESSION",
        help="start only after this session finished successfully, repeatable",
    )
    p.add_argument(
        "--starts-at", metavar="WHEN", help="batch: start at an ISO 8601 time or after 30m, 2h"
    )
    p.add_argument("--json", action="store_true", help="print the manager's answer as JSON")

    p = command("info", _info, "show one session")
    p.add_argument("id", metavar="ID", help="session name or UUID")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = command("list", _list, "list sessions, newest first")
    p.add_argument("--status", help="only these statuses, e.g. RUNNING or PENDING,RUNNING")
    p.add_argument("--all", action="store_true", help="every owner's sessions (superadmin)")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = command("logs", _logs, "print the container output of a session")
    p.add_argument("id", metavar="ID", help="session name or UUID")

    p = command("destroy", _destroy, "terminate a session (cancel it while pending)")
    p.add_argument("id", metavar="ID", help="session name or UUID")
    p.add_argument("--forced", action="store_true", help="terminate without waiting for kernels")

    p = command("events", _events, "follow lifecycle events until the stream closes")
    p.add_argument("id", metavar="ID", nargs="?", help="session name or UUID (default: all)")
    p.add_argument("--scope", choices=["session", "kernel", "*"], default="*")
    p.add_argument("--json", action="store_true", help="print one JSON object per event")
    return commands
