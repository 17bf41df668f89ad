"""The one place where httpx meets a registry: requests, and their failures as our errors.

Every registry client sends through :class:`RegistryHTTP`; transport failures become
:class:`~backendai.errors.RegistryUnreachable`, 401/403
:class:`~backendai.errors.RegistryAuthFailed`, 404
:class:`~backendai.errors.RegistryNotFound`, anything else at or above 400
:class:`~backendai.errors.RegistryError`.  Each message names the registry, the request
and what the registry said; never the password.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import httpx
import trio

from ..errors import RegistryAuthFailed, RegistryError, RegistryNotFound, RegistryUnreachable
from .model import RegistrySpec

__all__ = ["REQUEST_TIMEOUT", "RegistryHTTP"]

log = logging.getLogger(__name__)

# Seconds to connect to a registry, and to wait for each answer.
CONNECT_TIMEOUT = 10.0
REQUEST_TIMEOUT = 30.0
_CLOSE_TIMEOUT = 5.0


def _detail(response: httpx.Response) -> str:
    """The registry's own words: ``errors[].message`` (distribution, Harbor) or the text."""
    try:
        body = response.json()
    except (ValueError, UnicodeDecodeError):
        return response.text.strip()[:200] or response.reason_phrase
    if isinstance(body, Mapping) and isinstance(body.get("errors"), list):
        parts = [
            str(e.get("message") or e.get("code")) for e in body["errors"] if isinstance(e, Mapping)
        ]
        if parts:
            return "; ".join(parts)
    return json.dumps(body)[:200]


class RegistryHTTP:
    """An httpx client bound to one registry, translating failures (see the module docstring)."""

    def __init__(
        self,
        spec: RegistrySpec,
        *,
        auth: httpx.Auth | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.spec = spec
        self._client = httpx.AsyncClient(
            base_url=spec.url,
            auth=auth,
            transport=transport,
            timeout=httpx.Timeout(REQUEST_TIMEOUT, connect=CONNECT_TIMEOUT),
            follow_redirects=True,
            headers={"User-Agent": "backendai-registry-client"},
        )

    def _who(self) -> str:
        return f"user {self.spec.username!r}" if self.spec.username else "anonymous access"

    def _where(self) -> str:
        return f"registry {self.spec.name!r} at {self.spec.url}"

    async def get(
        self,
        path: str,
        *,
        what: str,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """GET *path*; *what* names the thing asked for in error messages."""
        try:
            response = await self._client.get(path, params=params, headers=headers)
        except httpx.TimeoutException as e:
            raise RegistryUnreachable(
                f"{self._where()} did not answer GET {path} within {REQUEST_TIMEOUT:g} s "
                f"({type(e).__name__})"
            ) from e
        except httpx.TransportError as e:
            raise RegistryUnreachable(
                f"{self._where()} does not answer GET {path}: {e or type(e).__name__}"
            ) from e
        status = response.status_code
        if status < 400:
            return response
        detail = _detail(response)
        if status in (401, 403):
            raise RegistryAuthFailed(
                f"{self._where()} refused {self._who()} for GET {path} ({status}: {detail}); "
                "check the registry's username and password"
            )
        if status == 404:
            raise RegistryNotFound(f"{self._where()}: {what} not found (GET {path}: {detail})")
        raise RegistryError(f"{self._where()} failed GET {path} for {what}: {status} {detail}")

    async def get_json(
        self,
        path: str,
        *,
        what: str,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[Any, httpx.Response]:
        response = await self.get(path, what=what, params=params, headers=headers)
        try:
            return response.json(), response
        except (ValueError, UnicodeDecodeError) as e:
            raise RegistryError(
                f"{self._where()}: GET {path} for {what} did not return JSON: {e}"
            ) from None

    async def aclose(self) -> None:
        with trio.move_on_after(_CLOSE_TIMEOUT, shield=True):
            await self._client.aclose()
