"""The ``backendai`` command as a user runs it: start, announce, stop, and fail clearly."""

from __future__ import annotations

import json
import socket
import stat
import subprocess
import sys
from pathlib import Path

import trio

from .procs import free_port, role_process, wait_for_file, write_config


def _config(tmp_path: Path, **manager: object) -> Path:
    return write_config(
        tmp_path / "backendai.toml",
        {
            "cluster": {"data_dir": str(tmp_path)},
            "manager": {"port": free_port(), **manager},
            "agent": {"port": free_port(), "backend": "dummy"},
            "storage": {"port": free_port(), "client_port": free_port()},
            "appproxy": {"port": free_port(), "api_port": free_port()},
        },
    )


async def test_all_in_one_announces_and_stops_gracefully(tmp_path: Path) -> None:
    config = _config(tmp_path)
    with role_process("all", config, tmp_path) as proc:
        creds_file = tmp_path / "credentials.json"
        await wait_for_file(creds_file, proc)
        assert stat.S_IMODE(creds_file.stat().st_mode) == 0o600
        creds = json.loads(creds_file.read_text())
        assert creds["access_key"].startswith("AKIA")
        assert creds["env"]["BACKEND_ENDPOINT"] == creds["endpoint"]
        with trio.fail_after(10):
            while True:  # the announcement follows the file by a moment
                if creds["secret_key"] in proc.log_path.read_text():
                    break
                await trio.sleep(0.1)
        text = proc.log_path.read_text()
        assert creds["endpoint"] in text
        # The secret is printed for the person who started it, never logged.
        assert not [
            line for line in text.splitlines() if creds["secret_key"] in line and " INFO " in line
        ]
        assert proc.stop() == 0
    assert "role all stopped" in proc.log_path.read_text()


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "backendai.cli", *args], capture_output=True, text=True, timeout=60
    )


def test_config_errors_exit_78_naming_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[manager]\nport = "eighty"\n')
    r = _run("run", "--role=manager", "--config", str(bad))
    assert r.returncode == 78
    assert f"{bad}:manager.port" in r.stderr
    assert "'eighty'" in r.stderr
    assert "integer" in r.stderr
    bad.write_text("[manager]\nprot = 8080\n")
    r = _run("config", "check", str(bad))
    assert r.returncode == 78
    assert "manager.prot: unknown key" in r.stderr


def test_busy_port_exits_69(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        config = write_config(
            tmp_path / "busy.toml",
            {"cluster": {"data_dir": str(tmp_path)}, "manager": {"port": port}},
        )
        r = _run("run", "--role=manager", "--config", str(config))
    assert r.returncode == 69, r.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in r.stderr
