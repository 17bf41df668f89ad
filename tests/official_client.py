"""The official Backend.AI client (23.9.10) in a venv of its own, built once and cached.

``BACKENDAI_TEST_CACHE`` (default ``~/.cache/backendai-test``) holds it.  If it cannot be
installed the tests that need it skip locally, and fail when ``CI`` is set.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

__all__ = ["OFFICIAL", "official_python"]

# yarl 1.9.4: with a newer yarl the client's request signing crashes (endpoint._val.netloc).
OFFICIAL = ["backend.ai-client==23.9.10", "yarl==1.9.4"]


def _cache_dir() -> Path:
    default = Path.home() / ".cache" / "backendai-test"
    return Path(os.environ.get("BACKENDAI_TEST_CACHE", default))


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"cannot set up the official client in CI: {reason}")
    pytest.skip(f"official client not installable here: {reason}")


@pytest.fixture(scope="module")
def official_python() -> Path:
    """The python of the official client's venv."""
    venv = _cache_dir() / "bai-client-venv"
    venv.parent.mkdir(parents=True, exist_ok=True)
    # One maker at a time (xdist workers, parallel CI jobs on one cache); the others wait.
    with open(venv.parent / "bai-client-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (venv / ".ready").exists():
            _make_venv(venv)
    return venv / "bin" / "python"


def _make_venv(venv: Path) -> None:
    shutil.rmtree(venv, ignore_errors=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", venv], check=True, capture_output=True)
        subprocess.run(
            [venv / "bin" / "python", "-m", "pip", "install", "-q", *OFFICIAL],
            check=True,
            capture_output=True,
            timeout=600,
        )
    except (OSError, subprocess.SubprocessError) as e:
        shutil.rmtree(venv, ignore_errors=True)
        stderr = getattr(e, "stderr", b"") or b""
        _unavailable(f"{e}; {stderr.decode(errors='replace')[-2000:]}")
    (venv / ".ready").touch()
