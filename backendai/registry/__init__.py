"""Container registries: the Docker Registry HTTP API v2 and Harbor v2, behind one protocol.

The only package that talks to registries (Docker's own pulls and pushes aside, which the
Docker engine does for us).  httpx under Trio; failures come out as
:class:`~backendai.errors.RegistryError` and its subclasses.
"""

from __future__ import annotations

from .auth import Challenge, RegistryAuth, parse_challenge, scope_for_path
from .client import RegistryClient, open_registry_client
from .docker_v2 import DockerRegistryClient
from .harbor import HarborClient
from .model import (
    REGISTRY_TYPES,
    ImageRecord,
    ImageReference,
    RegistrySpec,
    ScanResult,
    parse_reference,
    parse_registry_spec,
)

__all__ = [
    "REGISTRY_TYPES",
    "Challenge",
    "DockerRegistryClient",
    "HarborClient",
    "ImageRecord",
    "ImageReference",
    "RegistryAuth",
    "RegistryClient",
    "RegistrySpec",
    "ScanResult",
    "open_registry_client",
    "parse_challenge",
    "parse_reference",
    "parse_registry_spec",
    "scope_for_path",
]
