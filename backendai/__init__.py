"""backendai: a cluster platform for compute sessions, on Trio."""

from __future__ import annotations

__all__ = ["__version__"]
__version__ = "0.1.0"
