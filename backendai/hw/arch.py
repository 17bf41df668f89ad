"""CPU architecture names: one spelling (the kernel's, as Backend.AI uses) for all sources."""

from __future__ import annotations

import platform

__all__ = ["host_architecture", "normalize_arch"]

_ALIASES = {
    "amd64": "x86_64",
    "x64": "x86_64",
    "arm64": "aarch64",
    "arm64/v8": "aarch64",
    "armv8": "aarch64",
    "ppc64el": "ppc64le",
}


def normalize_arch(name: str) -> str:
    """``amd64`` (Docker, Debian) -> ``x86_64``; ``arm64`` -> ``aarch64``; others unchanged."""
    lowered = name.strip().lower()
    return _ALIASES.get(lowered, lowered)


def host_architecture() -> str:
    return normalize_arch(platform.machine())
