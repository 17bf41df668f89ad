"""The RegistryClient seam, and opening the client a registry's type calls for."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Protocol

import httpx

from .docker_v2 import DockerRegistryClient
from .harbor import HarborClient
from .model import ImageRecord, RegistrySpec, ScanResult

__all__ = ["RegistryClient", "open_registry_client"]


class RegistryClient(Protocol):
    spec: RegistrySpec

    async def check(self) -> None:
        """Raise a RegistryError unless the registry answers and takes our credentials."""
        ...

    async def scan(self) -> ScanResult:
        """Every kernel image the registry (or its project) holds, one record per platform."""
        ...

    async def platforms(self, repository: str, tag: str) -> list[ImageRecord]:
        """The platforms one tag offers.  Raises RegistryNotFound, RegistryAuthFailed, ..."""
        ...

    async def aclose(self) -> None: ...


@asynccontextmanager
async def open_registry_client(
    spec: RegistrySpec, *, transport: httpx.AsyncBaseTransport | None = None
) -> AsyncIterator[RegistryClient]:
    """A client for *spec*'s type (*transport*: for tests, e.g. a recorded exchange)."""
    client: RegistryClient
    if spec.type == "harbor":
        client = HarborClient(spec, transport=transport)
    else:
        client = DockerRegistryClient(spec, transport=transport)
    try:
        yield client
    finally:
        await client.aclose()
