"""One agent id per Docker engine: a host-wide lock taken at start-up.

Containers carry their agent's id in a label, and an agent removes the
containers with its id that it does not know.  Two agents started with the
same id on one engine (two ``backendai run`` on a laptop, a copied config)
would therefore destroy each other's kernels.  Each agent holds an exclusive
``flock`` on a file named after the engine and its id for as long as it runs;
a second one is refused at start-up with a message naming the holder.  The
kernel drops the lock when the holder dies, SIGKILL included, so nothing is
ever left stuck.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
from pathlib import Path

from ..errors import ConfigError

__all__ = ["AgentIdLock", "lock_dir"]


def lock_dir() -> Path:
    """``/run/backendai`` when writable (root, systemd), else the temp dir."""
    run = Path("/run/backendai")
    try:
        run.mkdir(mode=0o755, exist_ok=True)
        if os.access(run, os.W_OK):
            return run
    except OSError:
        pass
    return Path(tempfile.gettempdir())


class AgentIdLock:
    """Held while an agent with *agent_id* serves *engine*; see the module docstring."""

    def __init__(self, engine: str, agent_id: str, directory: Path | None = None) -> None:
        digest = hashlib.sha256(f"{engine}\0{agent_id}".encode()).hexdigest()[:24]
        self.path = (directory or lock_dir()) / f"backendai-agent-{digest}.lock"
        self.engine = engine
        self.agent_id = agent_id
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise ConfigError(
                f"agent.id: {self.agent_id!r} is already used by another agent on the Docker "
                f"engine at {self.engine} (pid {holder}, lock {self.path}); each agent on one "
                "engine needs its own id, or it would remove the other's containers"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
