"""Roles as separate OS processes (``backendai run --role=...``), for multi-process and fault tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

__all__ = ["RoleProcess", "free_port", "role_process", "write_config"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    return json.dumps(str(v))


def write_config(path: Path, sections: dict[str, dict[str, Any]]) -> Path:
    lines = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in values.items())
        lines.append("")
    path.write_text("\n".join(lines))
    return path


@dataclass
class RoleProcess:
    role: str
    config: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = field(default=0)

    def start(self) -> None:
        self.starts += 1
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child process
        log.write(f"\n===== start {self.starts} =====\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "backendai.cli",
                "run",
                f"--role={self.role}",
                "--config",
                str(self.config),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={k: v for k, v in os.environ.items() if not k.startswith("BACKENDAI_")},
        )
        log.close()

    def kill(self) -> None:
        """SIGKILL: no cleanup at all, as when a machine dies."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        """SIGTERM and wait: the graceful path."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return int(self.proc.returncode)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@contextmanager
def role_process(role: str, config: Path, log_dir: Path) -> Iterator[RoleProcess]:
    p = RoleProcess(role, config, log_dir / f"{role}.log")
    p.start()
    try:
        yield p
    finally:
        if p.alive():
            p.stop()


async def wait_for_file(path: Path, proc: RoleProcess, deadline: float = 30.0) -> None:
    with trio.fail_after(deadline):
        while not await trio.Path(path).exists():
            if not proc.alive():
                raise AssertionError(f"{proc.role} exited early:\n{proc.log_tail()}")
            await trio.sleep(0.1)  # polling another process's output: no event to await
