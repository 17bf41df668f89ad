"""Storage volumes served by the storage proxy role."""

from __future__ import annotations

from .volumes import VolumeInfo, list_volumes

__all__ = ["VolumeInfo", "list_volumes"]
