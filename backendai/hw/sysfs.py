"""Reading sysfs files under a root directory, tolerantly.

sysfs differs between kernels, firmware and virtual machines: files are
missing, say ``-1`` or hold a value we do not expect.  :class:`SysfsReader`
turns each of those into ``None`` plus, for a value that is there but
malformed, a warning naming the file and the text, so the readers above it
never crash on a host's oddities and the operator still learns about them.
"""

from __future__ import annotations

import os
from pathlib import Path

from .cpulist import parse_cpulist

__all__ = ["SysfsReader"]

# sysfs files are small; a bound keeps a wrong root (a FIFO, a huge file) harmless.
_MAX_READ = 65536


class SysfsReader:
    """Reads paths relative to *root* (``/sys``, or a generated tree in tests)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.warnings: list[str] = []

    def path(self, rel: str) -> Path:
        return self.root / rel

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)

    def text(self, rel: str | Path) -> str | None:
        """The stripped content, or None when the file is missing or unreadable."""
        path = rel if isinstance(rel, Path) else self.root / rel
        try:
            with open(path, "rb") as f:
                raw = f.read(_MAX_READ)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as e:  # EACCES, EIO (some attributes refuse to be read), EINVAL
            self.warn(f"{self._show(path)}: unreadable ({e.strerror or e})")
            return None
        return raw.decode("ascii", errors="replace").strip()

    def integer(self, rel: str | Path, *, base: int = 10) -> int | None:
        """An integer file (``base=16`` accepts ``0x10de``), else None (warned if malformed)."""
        raw = self.text(rel)
        if raw is None or raw == "":
            return None
        try:
            return int(raw, base)
        except ValueError:
            path = rel if isinstance(rel, Path) else self.root / rel
            self.warn(f"{self._show(path)}: {raw[:40]!r} is not an integer; ignored")
            return None

    def cpulist(self, rel: str | Path) -> frozenset[int] | None:
        raw = self.text(rel)
        if raw is None:
            return None
        path = rel if isinstance(rel, Path) else self.root / rel
        try:
            return parse_cpulist(raw, where=self._show(path))
        except ValueError as e:
            self.warn(f"{e}; ignored")
            return None

    def entries(self, rel: str | Path, prefix: str = "") -> list[str]:
        """Names in a directory starting with *prefix*, sorted; [] when it does not exist."""
        path = rel if isinstance(rel, Path) else self.root / rel
        try:
            names = os.listdir(path)
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as e:
            self.warn(f"{self._show(path)}: cannot list ({e.strerror or e})")
            return []
        return sorted(n for n in names if n.startswith(prefix))

    def _show(self, path: Path) -> str:
        """A path as the operator knows it: ``/sys/...`` relative to the root."""
        try:
            return "/sys/" + str(path.relative_to(self.root))
        except ValueError:
            return str(path)
