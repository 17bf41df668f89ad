"""CLI for running code: ``backendai run IMAGE``, ``session exec|shell|upload|download|ls``."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import secrets
import signal
import sys
from pathlib import Path
from typing import Any

import trio
import trio_websocket

from .api import APIClient
from .cli_session import run_session_command
from .exec_client import ExecResult, download, list_files, open_pty, stream_execute, upload
from .output import err, format_table, out

__all__ = ["add_exec_commands", "add_run_arguments", "run_code"]


def _print_result(result: ExecResult) -> None:
    for kind, data in result.get("console", []):
        if kind == "stdout":
            sys.stdout.write(data)
        elif kind == "stderr":
            sys.stderr.write(data)
        elif kind == "media":
            mime = data[0] if isinstance(data, list) and data else "?"
            sys.stdout.write(
                f"[{mime} output: {len(str(data[1] if len(data) > 1 else ''))} bytes]\n"
            )
        else:
            sys.stdout.write(f"[{kind}] {data}\n")
    sys.stdout.flush()
    sys.stderr.flush()
    status = result.get("status")
    if status in ("build-finished", "clean-finished"):
        err(f"{status.replace('-', ' ')} (exit code {result.get('exitCode')})")
    elif status == "exec-timeout":
        err("execution timed out")


async def _ask(result: ExecResult) -> str:
    secret = bool((result.get("options") or {}).get("is_password"))
    prompt = (result.get("options") or {}).get("prompt", "")
    return await trio.to_thread.run_sync(
        lambda: getpass.getpass(prompt) if secret else input(prompt)
    )


async def _execute(api: APIClient, ref: str, args: argparse.Namespace, files: list[Path]) -> int:
    if files:
        await upload(api, ref, files, Path(args.basedir or os.getcwd()))
    if args.code is not None:
        mode, code, options = "query", args.code, {}
    else:
        mode, code = "batch", ""
        options = {"build": args.build or "", "exec": args.exec or "*", "clean": ""}
    final = await stream_execute(
        api, ref, mode=mode, code=code, options=options, on_result=_print_result, ask_input=_ask
    )
    if final["status"] == "exec-timeout":
        return 124
    code_ = final.get("exitCode")
    return int(code_) if isinstance(code_, int) else 0


async def run_code(api: APIClient, args: argparse.Namespace) -> int:
    """``backendai run IMAGE``: create (or reuse) a session, run, exit with the code's exit code."""
    files = [Path(f) for f in args.files]
    if (args.code is None) == (not files and not args.exec):
        err("error: give either -c CODE, or files / --exec CMD to run in batch mode")
        return 2
    name = args.name or f"run-{secrets.token_hex(4)}"
    resources = dict(args.resources)
    created = await api.create_session(
        args.image, name, resources=resources, reuse=True, max_wait=args.max_wait
    )
    if created["status"] != "RUNNING":
        err(
            f"error: session {name} is {created['status']}, not RUNNING; see: backendai session info {name}"
        )
        return 1
    try:
        return await _execute(api, name, args, files)
    finally:
        if args.rm:
            with trio.move_on_after(30, shield=True):
                await api.destroy_session(name)


async def _exec(api: APIClient, args: argparse.Namespace) -> int:
    return await _execute(api, args.id, args, [Path(f) for f in args.files])


async def _upload(api: APIClient, args: argparse.Namespace) -> int:
    stored = await upload(
        api, args.id, [Path(f) for f in args.files], Path(args.basedir or os.getcwd())
    )
    for name in stored:
        out(f"uploaded {name}")
    return 0


async def _download(api: APIClient, args: argparse.Namespace) -> int:
    for path in args.files:
        for name in await download(api, args.id, path, Path(args.dest)):
            out(f"downloaded {name}")
    return 0


async def _ls(api: APIClient, args: argparse.Namespace) -> int:
    entries = await list_files(api, args.id, args.path)
    if args.json:
        out(json.dumps(entries))
        return 0
    rows = [(e["filename"], e.get("type", ""), e["size"], e["mode"], e["mtime"]) for e in entries]
    out(format_table(["NAME", "TYPE", "SIZE", "MODE", "MTIME"], rows))
    return 0


async def _shell(api: APIClient, args: argparse.Namespace) -> int:
    """A real terminal in the container: raw mode here, bytes both ways, resizes forwarded."""
    import base64
    import termios
    import tty

    interactive = sys.stdin.isatty()
    saved = termios.tcgetattr(0) if interactive else None
    async with open_pty(api, args.id) as ws:

        async def send_size() -> None:
            if interactive:
                cols, rows = os.get_terminal_size(0)
                await ws.send_message(json.dumps({"type": "resize", "rows": rows, "cols": cols}))

        async def pump_in() -> None:
            stdin = trio.lowlevel.FdStream(os.dup(0))
            while data := await stdin.receive_some(4096):
                await ws.send_message(
                    json.dumps({"type": "stdin", "chars": base64.b64encode(data).decode()})
                )

        async def watch_resize() -> None:
            with trio.open_signal_receiver(signal.SIGWINCH) as signals:
                async for _ in signals:
                    await send_size()

        try:
            if saved is not None:
                tty.setraw(0)
            async with trio.open_nursery() as nursery:
                await send_size()
                nursery.start_soon(pump_in)
                nursery.start_soon(watch_resize)
                try:
                    while True:
                        msg = json.loads(await ws.get_message())
                        if msg.get("type") == "out":
                            sys.stdout.buffer.write(base64.b64decode(msg["data"]))
                            sys.stdout.buffer.flush()
                        elif msg.get("type") == "error":
                            err(f"\r\nerror: {msg.get('msg')}")
                            break
                except trio_websocket.ConnectionClosed:
                    pass
                nursery.cancel_scope.cancel()
        finally:
            if saved is not None:
                termios.tcsetattr(0, termios.TCSADRAIN, saved)
    return 0


def add_run_arguments(run: argparse.ArgumentParser) -> None:
    """Client options of ``backendai run IMAGE ...`` (the same verb runs a server role without IMAGE)."""
    run.add_argument(
        "image", nargs="?", metavar="IMAGE", help="run code in a session of IMAGE (client mode)"
    )
    run.add_argument(
        "files", nargs="*", metavar="FILE", help="files to upload and run in batch mode"
    )
    _code_options(run)
    run.add_argument("--name", help="session name (reused if it exists)")
    run.add_argument("--rm", action="store_true", help="destroy the session afterwards")
    run.add_argument("--max-wait", type=float, default=120.0, metavar="SECONDS")
    run.add_argument(
        "-r", "--resource", dest="resources", action="append", default=[], metavar="SLOT=AMOUNT",
        type=lambda s: tuple(s.split("=", 1)), help="requested resource, repeatable",
    )  # fmt: skip


def _code_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--code", help="code to run in the session's interpreter (query mode)")
    p.add_argument("--exec", help="batch mode: shell command that runs the uploaded files")
    p.add_argument("--build", help="batch mode: shell command that builds first")
    p.add_argument("--basedir", help="base directory of the uploaded files (default: cwd)")


def add_exec_commands(commands: argparse._SubParsersAction[Any]) -> None:
    """Add the execution and file subcommands to ``backendai session``."""

    def command(name: str, handler: Any, help: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = commands.add_parser(name, help=help, description=help)
        parser.set_defaults(func=run_session_command, handler=handler)
        parser.add_argument("id", metavar="SESSION", help="session name or UUID")
        return parser

    p = command("exec", _exec, "run code or a batch command in a session, streaming its output")
    p.add_argument("files", nargs="*", metavar="FILE", help="files to upload first")
    _code_options(p)
    command("shell", _shell, "open a terminal in the session's container")
    p = command("upload", _upload, "upload files into /home/work")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--basedir", help="paths are kept relative to this directory (default: cwd)")
    p = command("download", _download, "download files or directories from /home/work")
    p.add_argument("files", nargs="+", metavar="PATH")
    p.add_argument("--dest", default=".", help="where to put them (default: .)")
    p = command("ls", _ls, "list a directory under /home/work")
    p.add_argument("path", nargs="?", default=".")
    p.add_argument("--json", action="store_true")
