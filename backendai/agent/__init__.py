"""The agent: compute backends, the kernel registry, its RPC server and heartbeats."""

from __future__ import annotations

from .backend import (
    IPC_MOUNT,
    RUNNER_MOUNT,
    ComputeBackend,
    ImageInfo,
    KernelInfo,
    KernelSpec,
    KernelState,
)
from .backends import backend_names, open_compute_backend
from .docker import DockerBackend
from .dummy import DummyBackend
from .imagebuild import build_python_image
from .local import LocalBackend

__all__ = [
    "IPC_MOUNT",
    "RUNNER_MOUNT",
    "ComputeBackend",
    "DockerBackend",
    "DummyBackend",
    "ImageInfo",
    "KernelInfo",
    "KernelSpec",
    "KernelState",
    "LocalBackend",
    "backend_names",
    "build_python_image",
    "open_compute_backend",
]
