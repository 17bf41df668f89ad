"""The built-in device plugins: ``cpu``, ``mem`` and ``cuda``."""

from __future__ import annotations

from .cpu import CPUPlugin
from .cuda import CUDAPlugin
from .mem import MemoryPlugin

__all__ = ["CPUPlugin", "CUDAPlugin", "MemoryPlugin"]
