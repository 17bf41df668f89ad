"""Storage volumes served by the storage proxy role: backends, path safety, transfers."""

from __future__ import annotations

from .backend import FolderUsage, VolumeBackend, check_folder_id, load_backend
from .volumes import VolumeInfo, Volumes, list_volumes, open_volumes

__all__ = [
    "FolderUsage",
    "VolumeBackend",
    "VolumeInfo",
    "Volumes",
    "check_folder_id",
    "list_volumes",
    "load_backend",
    "open_volumes",
]
