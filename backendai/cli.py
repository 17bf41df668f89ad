"""The ``backendai`` command: parse, call, print.  Nothing else lives here.

backendai run --role=all|manager|agent|storage|appproxy [--config PATH]
backendai image build python [--force] [--push REGISTRY [--username U --password-stdin]]
backendai session create|info|list|logs|destroy|events ...
backendai vfolder create|ls|upload|download|rm|share ...
backendai config check PATH
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

import trio

from .config import Config, load_config
from .errors import BackendAIError, ConfigError, ImageBuildError, UnavailableError
from .lifecycle import (
    EXIT_CONFIG,
    EXIT_OK,
    EXIT_SOFTWARE,
    EXIT_UNAVAILABLE,
    run_until_signalled,
)

__all__ = ["main"]

log = logging.getLogger("backendai")


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in (
        "httpx",
        "httpcore",
        "hypercorn.access",
        "alembic.runtime.migration",
        "docker",
        "urllib3",
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _announce(role: str, info: Any) -> None:
    """Print where the cluster answers and how to use it (stdout: for the person who ran it)."""
    m = getattr(info, "manager", info if role == "manager" else None)
    if m is None:
        print(f"backendai {role} is running: {info}", flush=True)
        return
    c = m.credentials
    print(
        "\n".join(
            [
                f"backendai {role} is running.",
                f"  endpoint:     {m.endpoint}",
                f"  access key:   {c.access_key}",
                f"  secret key:   {c.secret_key}",
                f"  saved to:     {m.credentials_file} (mode 0600)",
                "Use it with:",
                f"  export BACKEND_ENDPOINT={m.endpoint} BACKEND_ACCESS_KEY={c.access_key} "
                f"BACKEND_SECRET_KEY={c.secret_key}",
                "  backendai session create backendai/python:3.11",
            ]
        ),
        flush=True,
    )


def _cmd_run(args: argparse.Namespace) -> int:
    if args.image is not None:
        from .client.cli_exec import run_code
        from .client.cli_session import run_session_command

        args.handler = run_code
        return run_session_command(args)
    from .roles import ROLES

    config = load_config(args.config)
    _setup_logging(args.log_level or config.logging.level)
    serve = ROLES[args.role]
    log.info("starting role %s (config: %s)", args.role, args.config or "embedded defaults")
    trio.run(
        lambda: run_until_signalled(
            serve,
            config,
            shutdown_timeout=config.manager.shutdown_timeout,
            on_started=lambda info: _announce(args.role, info),
        )
    )
    log.info("role %s stopped", args.role)
    return EXIT_OK


def _cmd_image_build(args: argparse.Namespace) -> int:
    from .agent.docker_images import push_image, push_target
    from .agent.imagebuild import build_python_image
    from .client.cli_admin_images import PASSWORD_ENV

    _setup_logging(args.log_level or "INFO")
    if args.kind != "python":
        raise ConfigError(f"image kind {args.kind!r}: unknown; known kinds: python")
    target = push_target(args.push, args.tag) if args.push else None  # checked before building
    image_id = build_python_image(tag=args.tag, force=args.force, mirror=args.mirror)
    print(f"{args.tag} {image_id}")
    if target is not None:
        password = sys.stdin.readline().rstrip("\r\n") if args.password_stdin else ""
        password = password or os.environ.get(PASSWORD_ENV, "")
        digest = push_image(args.tag, target, username=args.username, password=password)
        print(f"{target}@{digest}")
    return EXIT_OK


def _cmd_config_check(args: argparse.Namespace) -> int:
    config: Config = load_config(args.path)
    print(f"{args.path}: valid ({len(vars(config))} sections)")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    from .client.cli_admin import add_admin_commands
    from .client.cli_app import add_app_commands
    from .client.cli_exec import add_exec_commands, add_run_arguments
    from .client.cli_session import add_session_commands
    from .client.cli_vfolder import add_vfolder_commands

    parser = argparse.ArgumentParser(prog="backendai", description="backendai cluster platform")
    parser.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser(
        "run",
        help="run a role of the platform, or code in a session (with IMAGE)",
        description="Without IMAGE: serve a role (--role, --config). With IMAGE: run code in a "
        "session of that image (-c CODE, or FILES / --exec CMD in batch mode) and exit with its "
        "exit code.",
    )
    run.add_argument(
        "--role", choices=["all", "manager", "agent", "storage", "appproxy"], default="all"
    )
    run.add_argument("--config", help="TOML config file (default: embedded defaults)")
    add_run_arguments(run)
    run.set_defaults(func=_cmd_run)

    image = sub.add_parser("image", help="kernel images").add_subparsers(
        dest="image_command", required=True
    )
    build = image.add_parser("build", help="build a kernel image locally")
    build.add_argument("kind", help="what to build: python")
    build.add_argument("--tag", default="backendai/python:3.11")
    build.add_argument("--force", action="store_true", help="rebuild even if the image exists")
    build.add_argument("--mirror", help="Debian mirror URL (default: the one apt uses here)")
    build.add_argument(
        "--push",
        metavar="REGISTRY",
        help="then push it to REGISTRY (HOST[:PORT][/NAMESPACE], e.g. 127.0.0.1:5000)",
    )
    build.add_argument("--username", default="", help="registry account for --push")
    build.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the --push password from standard input (else BACKENDAI_REGISTRY_PASSWORD)",
    )
    build.set_defaults(func=_cmd_image_build)

    config = sub.add_parser("config", help="configuration").add_subparsers(
        dest="config_command", required=True
    )
    check = config.add_parser("check", help="validate a config file")
    check.add_argument("path")
    check.set_defaults(func=_cmd_config_check)

    add_exec_commands(add_session_commands(sub))
    add_admin_commands(sub)
    add_vfolder_commands(sub)
    add_app_commands(sub)
    return parser


def _describe_failure(eg: BaseExceptionGroup[BaseException] | BaseException) -> int:
    """Print each error of a (possibly nested) group; return the exit code of the first."""
    leaves: list[BaseException] = []

    def walk(e: BaseException) -> None:
        if isinstance(e, BaseExceptionGroup):
            for sub in e.exceptions:
                walk(sub)
        else:
            leaves.append(e)

    walk(eg)
    codes = []
    for e in leaves:
        if isinstance(e, ConfigError):
            print(f"backendai: configuration error: {e}", file=sys.stderr)
            codes.append(EXIT_CONFIG)
        elif isinstance(e, UnavailableError):
            print(f"backendai: unavailable: {e}", file=sys.stderr)
            codes.append(EXIT_UNAVAILABLE)
        elif isinstance(e, ImageBuildError):
            print(f"backendai: image build failed: {e}", file=sys.stderr)
            codes.append(EXIT_SOFTWARE)
        elif isinstance(e, BackendAIError):
            print(f"backendai: {e}", file=sys.stderr)
            codes.append(EXIT_SOFTWARE)
        else:
            log.error("unexpected error", exc_info=e)
            codes.append(EXIT_SOFTWARE)
    return codes[0] if codes else EXIT_SOFTWARE


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except (BackendAIError, BaseExceptionGroup) as e:
        if isinstance(e, BaseExceptionGroup) and not e.subgroup(lambda x: isinstance(x, Exception)):
            raise
        return _describe_failure(e)
    return code


if __name__ == "__main__":
    sys.exit(main())
