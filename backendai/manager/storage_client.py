"""The manager's client of the storage proxy's manager-facing API (cluster secret).

Errors the proxy reports as problem+json come back as the same APIError, so
a quota or path error reaches the user with the proxy's own message; a proxy
that does not answer is a 500 naming it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from ..config import Secret
from ..errors import (
    APIError,
    Conflict,
    InvalidAPIParameters,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
    ServerError,
    VFolderNotFound,
)

__all__ = ["StorageClient", "open_storage_client"]

log = logging.getLogger(__name__)

_BY_STATUS: dict[int, type[APIError]] = {
    400: InvalidAPIParameters,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    413: QuotaExceeded,
}


class StorageClient:
    def __init__(self, http: httpx.AsyncClient, url: str) -> None:
        self._http = http
        self.url = url
        self._public_url: str | None = None

    async def call(
        self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None
    ) -> Any:
        try:
            resp = await self._http.request(method, path, json=json, params=params)
        except httpx.HTTPError as e:
            raise ServerError(f"the storage proxy at {self.url} does not answer: {e!r}") from None
        if resp.status_code == 204:
            return None
        try:
            body = resp.json()
        except ValueError:
            body = {"msg": resp.text[:200]}
        if resp.status_code >= 400:
            msg = body.get("msg", resp.text[:200]) if isinstance(body, dict) else str(body)
            slug = str(body.get("type", "")) if isinstance(body, dict) else ""
            if resp.status_code == 404 and slug.endswith("/vfolder-not-found"):
                raise VFolderNotFound(msg)
            if resp.status_code == 413 and not slug.endswith("/vfolder-quota-exceeded"):
                raise InvalidAPIParameters(msg)
            cls = _BY_STATUS.get(resp.status_code)
            if cls is None:
                log.warning("storage proxy %s %s: %d %s", method, path, resp.status_code, msg)
                raise ServerError(f"storage proxy: {method} {path}: {resp.status_code} {msg}")
            raise cls(msg)
        return body

    async def public_url(self) -> str:
        """Where clients reach the proxy for uploads and downloads (asked once)."""
        if self._public_url is None:
            self._public_url = str((await self.call("GET", "/v1/volumes"))["public_url"])
        return self._public_url

    async def volumes(self) -> list[dict[str, Any]]:
        return list((await self.call("GET", "/v1/volumes"))["volumes"])


@asynccontextmanager
async def open_storage_client(url: str, secret: Secret) -> AsyncIterator[StorageClient]:
    headers = {"Authorization": f"Bearer {secret.reveal()}"}
    timeout = httpx.Timeout(300.0, connect=10.0)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=timeout) as http:
        yield StorageClient(http, url)
