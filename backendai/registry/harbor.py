"""A client of Harbor v2 (``/api/v2.0``): projects, repositories, artifacts.

Harbor's own API (HTTP Basic auth) lists a project's repositories and their artifacts
with tags and ``extra_attrs`` (architecture, os, the image config with its labels); an
index artifact (a multi-architecture image) names its children in ``references``, each
of which we read for its labels.  Repository names inside a project are URL-encoded
twice in paths (``a/b`` -> ``a%252Fb``).  Pulling goes through the registry API Harbor
also serves, so :meth:`HarborClient.platforms` uses the v2 client on the same host.

Tested against a recorded exchange that follows Harbor's published API definition; it
has not been run against a live Harbor.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx

from ..errors import RegistryError, RegistryNotFound
from .docker_v2 import DockerRegistryClient
from .http import RegistryHTTP
from .manifests import INDEX_TYPES, platform_arch
from .model import ImageRecord, RegistrySpec, ScanResult

__all__ = ["HarborClient"]

log = logging.getLogger(__name__)

API = "/api/v2.0"
PAGE_SIZE = 100


def _repo_path(repository: str) -> str:
    """A repository name inside its project, as Harbor's paths want it (slashes twice-encoded)."""
    return quote(quote(repository, safe=""), safe="")


class HarborClient:
    """See the module docstring; ``spec.project`` names the one Harbor project it covers."""

    def __init__(
        self, spec: RegistrySpec, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.spec = spec
        auth = httpx.BasicAuth(spec.username, spec.password.reveal()) if spec.username else None
        self._http = RegistryHTTP(spec, auth=auth, transport=transport)
        self._v2 = DockerRegistryClient(spec, transport=transport)

    async def aclose(self) -> None:
        await self._http.aclose()
        await self._v2.aclose()

    async def check(self) -> None:
        """Raise unless the project exists and our credentials may read it."""
        await self.project()

    async def project(self) -> dict[str, Any]:
        body, _ = await self._http.get_json(
            f"{API}/projects/{quote(self.spec.project, safe='')}",
            what=f"Harbor project {self.spec.project!r}",
            headers={"X-Is-Resource-Name": "true"},
        )
        if not isinstance(body, dict):
            raise RegistryError(f"Harbor project {self.spec.project!r}: expected an object")
        return body

    async def _pages(self, path: str, what: str, params: Mapping[str, str]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        page = 1
        while True:
            query = {**params, "page": str(page), "page_size": str(PAGE_SIZE)}
            body, _ = await self._http.get_json(path, what=what, params=query)
            if not isinstance(body, list):
                raise RegistryError(f"Harbor {what}: expected a list, got {type(body).__name__}")
            out.extend(x for x in body if isinstance(x, dict))
            if len(body) < PAGE_SIZE:
                return out
            page += 1

    async def repositories(self) -> list[str]:
        """Repository names inside the project (without the ``project/`` prefix)."""
        project = quote(self.spec.project, safe="")
        rows = await self._pages(
            f"{API}/projects/{project}/repositories",
            f"repositories of project {self.spec.project!r}",
            {},
        )
        prefix = self.spec.project + "/"
        return sorted(str(r["name"]).removeprefix(prefix) for r in rows if r.get("name"))

    def _artifacts_path(self, repository: str) -> str:
        project = quote(self.spec.project, safe="")
        return f"{API}/projects/{project}/repositories/{_repo_path(repository)}/artifacts"

    async def artifacts(self, repository: str) -> list[dict[str, Any]]:
        return await self._pages(
            self._artifacts_path(repository),
            f"artifacts of {self.spec.project}/{repository}",
            {"with_tag": "true", "with_label": "false"},
        )

    async def artifact(self, repository: str, reference: str) -> dict[str, Any]:
        body, _ = await self._http.get_json(
            f"{self._artifacts_path(repository)}/{reference}",
            what=f"artifact {self.spec.project}/{repository}@{reference}",
        )
        if not isinstance(body, dict):
            raise RegistryError(f"artifact {repository}@{reference}: expected an object")
        return body

    def _record(
        self, repository: str, tag: str, art: Mapping[str, Any], arch: str, index: str
    ) -> ImageRecord:
        extra = art.get("extra_attrs") or {}
        config = extra.get("config") or {}
        labels = config.get("Labels") or {}
        return ImageRecord(
            repository=f"{self.spec.project}/{repository}",
            tag=tag,
            digest=str(art.get("digest", "")),
            architecture=arch or platform_arch(str(extra.get("architecture", ""))),
            os=str(extra.get("os") or "linux"),
            size_bytes=int(art.get("size") or 0),
            labels={str(k): str(v) for k, v in labels.items()},
            index_digest=index,
        )

    async def _records_of(self, repository: str, art: Mapping[str, Any]) -> list[ImageRecord]:
        tags = [str(t["name"]) for t in art.get("tags") or [] if t.get("name")]
        if not tags or art.get("type", "IMAGE") != "IMAGE":
            return []
        kind = str(art.get("manifest_media_type") or art.get("media_type") or "")
        references = art.get("references") or []
        if kind not in INDEX_TYPES and not references:
            return [self._record(repository, tag, art, "", "") for tag in tags]
        records: list[ImageRecord] = []
        for ref in references:
            platform = ref.get("platform") or {}
            if platform.get("architecture") in (None, "", "unknown"):
                continue
            arch = platform_arch(str(platform["architecture"]), str(platform.get("variant", "")))
            child = await self.artifact(repository, str(ref["child_digest"]))
            records.extend(
                self._record(repository, tag, child, arch, str(art.get("digest", "")))
                for tag in tags
            )
        return records

    async def scan(self) -> ScanResult:
        """Every tagged kernel image (per platform) in the project."""
        result = ScanResult(self.spec.name)
        await self.project()
        for repository in await self.repositories():
            for art in await self.artifacts(repository):
                try:
                    records = await self._records_of(repository, art)
                except RegistryError as e:
                    result.skip(f"{self.spec.project}/{repository}@{art.get('digest')}", str(e))
                    continue
                result.keep_kernel_images(records)
        result.records.sort(key=lambda r: (r.repository, r.tag, r.architecture))
        return result

    async def platforms(self, repository: str, tag: str) -> list[ImageRecord]:
        """Through the registry API Harbor serves beside its own (what Docker pulls from)."""
        try:
            return await self._v2.platforms(repository, tag)
        except RegistryNotFound as e:
            raise RegistryNotFound(f"Harbor project {self.spec.project!r}: {e}") from None
