"""A client of the Docker Registry HTTP API v2 (distribution; also spoken by Harbor, Hub, ...).

``GET /v2/`` checks that the registry answers and takes the credentials;
``/v2/_catalog`` and ``/v2/<name>/tags/list`` (both paginated with ``Link: <...>;
rel="next"``) list repositories and tags; ``/v2/<name>/manifests/<ref>`` gives a manifest
or a manifest list, and ``/v2/<name>/blobs/<digest>`` the image config with its labels.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

import httpx
import trio

from ..errors import RegistryError
from .auth import RegistryAuth
from .http import RegistryHTTP
from .manifests import (
    ACCEPT,
    content_digest,
    is_index,
    kernel_labels,
    parse_index,
    parse_manifest,
    platform_of,
)
from .model import ImageRecord, RegistrySpec, ScanResult

__all__ = ["DockerRegistryClient"]

log = logging.getLogger(__name__)

PAGE_SIZE = 100
# Manifest and config requests in flight at once during a scan.
SCAN_CONCURRENCY = 8


class DockerRegistryClient:
    """See the module docstring.  ``project`` (optional) limits a scan to ``project/...``."""

    def __init__(
        self, spec: RegistrySpec, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.spec = spec
        auth = RegistryAuth(f"{spec.name!r} at {spec.url}", spec.username, spec.password)
        self._http = RegistryHTTP(spec, auth=auth, transport=transport)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def check(self) -> None:
        """Raise unless the registry answers the v2 API and takes our credentials."""
        await self._http.get("/v2/", what="the v2 API root")

    async def _paged(self, path: str, key: str, what: str) -> list[str]:
        out: list[str] = []
        url: str | None = path
        params: dict[str, str] | None = {"n": str(PAGE_SIZE)}
        while url is not None:
            body, response = await self._http.get_json(url, what=what, params=params)
            items = body.get(key) if isinstance(body, Mapping) else None
            out.extend(str(x) for x in items or [])
            url = response.links.get("next", {}).get("url")
            params = None  # the next link carries them
        return out

    async def repositories(self) -> list[str]:
        repos = await self._paged("/v2/_catalog", "repositories", "the repository catalog")
        prefix = f"{self.spec.project}/" if self.spec.project else ""
        return sorted(r for r in repos if r.startswith(prefix))

    async def tags(self, repository: str) -> list[str]:
        return sorted(
            await self._paged(f"/v2/{repository}/tags/list", "tags", f"repository {repository!r}")
        )

    async def _manifest(self, repository: str, reference: str) -> tuple[dict[str, Any], str, str]:
        path = f"/v2/{repository}/manifests/{reference}"
        what = (
            f"manifest {repository}:{reference}"
            if ":" not in reference
            else f"manifest {repository}@{reference}"
        )
        response = await self._http.get(path, what=what, headers={"Accept": ACCEPT})
        try:
            doc = response.json()
        except ValueError as e:
            raise RegistryError(f"{what}: not JSON: {e}") from None
        if not isinstance(doc, dict):
            raise RegistryError(f"{what}: expected a JSON object")
        media = response.headers.get("Content-Type", "").partition(";")[0].strip()
        digest = response.headers.get("Docker-Content-Digest") or content_digest(response.content)
        return doc, media, digest

    async def _config(self, repository: str, digest: str) -> dict[str, Any]:
        body, _ = await self._http.get_json(
            f"/v2/{repository}/blobs/{digest}", what=f"config blob {digest} of {repository}"
        )
        if not isinstance(body, dict):
            raise RegistryError(f"config blob {digest} of {repository}: expected a JSON object")
        return body

    async def _record(
        self, repository: str, tag: str, digest: str, doc: Mapping[str, Any], media: str, index: str
    ) -> ImageRecord:
        where = f"{self.spec.host}/{repository}@{digest}"
        manifest = parse_manifest(doc, media, where)
        config = await self._config(repository, manifest.config_digest)
        arch, os_ = platform_of(config)
        return ImageRecord(
            repository=repository,
            tag=tag,
            digest=digest,
            architecture=arch,
            os=os_,
            size_bytes=manifest.size,
            labels=kernel_labels(config),
            layers=manifest.layers,
            index_digest=index,
        )

    async def platforms(self, repository: str, tag: str) -> list[ImageRecord]:
        """One record per platform the tag offers (several when it names a manifest list)."""
        doc, media, digest = await self._manifest(repository, tag)
        if not is_index(doc, media):
            return [await self._record(repository, tag, digest, doc, media, "")]
        records = []
        for entry in parse_index(doc, f"{self.spec.host}/{repository}:{tag}"):
            sub, sub_media, sub_digest = await self._manifest(repository, entry.digest)
            record = await self._record(repository, tag, sub_digest, sub, sub_media, digest)
            if entry.architecture and record.architecture != entry.architecture:
                # The list's platform is what clients select by; keep it.
                record = dataclasses.replace(record, architecture=entry.architecture)
            records.append(record)
        return records

    async def scan(self) -> ScanResult:
        """Every kernel image (tag and platform) under the project, or in the whole registry."""
        result = ScanResult(self.spec.name)
        limiter = trio.CapacityLimiter(SCAN_CONCURRENCY)

        async def one(repository: str, tag: str) -> None:
            async with limiter:
                try:
                    records = await self.platforms(repository, tag)
                except RegistryError as e:
                    result.skip(f"{repository}:{tag}", str(e))
                    return
            result.keep_kernel_images(records)

        for repository in await self.repositories():
            tags = await self.tags(repository)
            async with trio.open_nursery() as nursery:
                for tag in tags:
                    nursery.start_soon(one, repository, tag)
        result.records.sort(key=lambda r: (r.repository, r.tag, r.architecture))
        return result
