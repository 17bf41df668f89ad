"""An async client of the manager's REST API (httpx; runs under Trio).

Requests are signed exactly like the official ``backend.ai-client`` signs them
(see :mod:`backendai.client.signing`).  Failures come out as our errors: an HTTP
error answer is an :class:`APIResponseError` carrying the problem+json fields; a
manager that cannot be reached is an :class:`~backendai.errors.UnavailableError`
naming the endpoint.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx
import trio

from backendai.config import Secret
from backendai.errors import BackendAIError, ConfigError, UnavailableError

from .signing import sign_request
from .sse import ServerSentEvent, SSEDecoder

__all__ = ["API_VERSION", "APIClient", "APIResponseError", "ClientConfig"]

API_VERSION = "v7.20230615"
DEFAULT_ENDPOINT = "http://127.0.0.1:8081"
_CLOSE_TIMEOUT = 5.0
# Connecting may fail fast; reading waits as long as the server works (maxWaitSeconds, streams).
_HTTP_TIMEOUT = httpx.Timeout(None, connect=10.0)


class APIResponseError(BackendAIError):
    """The manager answered with an HTTP error (problem+json when it is ours)."""

    def __init__(self, status: int, slug: str, title: str, msg: str) -> None:
        self.status = status
        self.slug = slug
        self.title = title
        self.msg = msg
        detail = f"{title}: {msg}" if msg else title
        super().__init__(f"{detail} (HTTP {status}, {slug})")

    @classmethod
    def from_response(cls, response: httpx.Response) -> APIResponseError:
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            slug = str(body.get("type") or "").rstrip("/").rpartition("/")[2] or "unknown"
            title = str(body.get("title") or response.reason_phrase)
            msg = body.get("msg") or body.get("detail") or ""
            return cls(response.status_code, slug, title, str(msg))
        snippet = response.text.strip()[:300]
        return cls(response.status_code, "unknown", response.reason_phrase, snippet)


@dataclasses.dataclass(frozen=True)
class ClientConfig:
    """Where the manager is and which keypair signs; from BACKEND_* variables."""

    endpoint: str
    access_key: str
    secret_key: Secret
    api_version: str = API_VERSION

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ClientConfig:
        env = os.environ if env is None else env
        endpoint_type = env.get("BACKEND_ENDPOINT_TYPE", "api")
        if endpoint_type != "api":
            raise ConfigError(
                f"environment BACKEND_ENDPOINT_TYPE: {endpoint_type!r} is not supported; "
                "expected 'api' (keypair-signed requests to the manager)"
            )
        endpoint = env.get("BACKEND_ENDPOINT", "").strip() or DEFAULT_ENDPOINT
        url = httpx.URL(endpoint) if "," not in endpoint else None
        if url is None or url.scheme not in {"http", "https"} or not url.host:
            raise ConfigError(
                f"environment BACKEND_ENDPOINT: {endpoint!r} is not one http(s) URL; "
                f"expected e.g. {DEFAULT_ENDPOINT!r}"
            )
        missing = [k for k in ("BACKEND_ACCESS_KEY", "BACKEND_SECRET_KEY") if not env.get(k)]
        if missing:
            saved = _saved_credentials(env)
            if saved is not None and not env.get("BACKEND_ENDPOINT"):
                return saved
            raise ConfigError(
                f"environment {' and '.join(missing)} not set; expected the keypair the "
                "manager wrote to its credentials file (<data_dir>/credentials.json)"
            )
        return cls(endpoint, env["BACKEND_ACCESS_KEY"], Secret(env["BACKEND_SECRET_KEY"]))


def _saved_credentials(env: Mapping[str, str]) -> ClientConfig | None:
    """The all-in-one cluster's credentials file, for a user on the same machine."""
    base = env.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local/share")
    path = os.path.join(base, "backendai", "credentials.json")
    try:
        with open(path) as f:
            saved = json.load(f)
        return ClientConfig(saved["endpoint"], saved["access_key"], Secret(saved["secret_key"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _session_path(session_id: str, suffix: str = "") -> str:
    return f"/session/{quote(session_id, safe='')}{suffix}"


def _expect_dict(response: httpx.Response) -> dict[str, Any]:
    if response.status_code == 204 or not response.content:
        return {}
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise APIResponseError(
            response.status_code,
            "invalid-response",
            "Invalid response from the manager",
            f"expected a JSON object, got {response.text.strip()[:200]!r}",
        )
    return body


class APIClient:
    """``async with APIClient(endpoint, access_key, secret_key) as api: ...``"""

    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str | Secret,
        *,
        api_version: str = API_VERSION,
        hash_name: str = "sha256",
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.access_key = access_key
        self._secret = secret_key if isinstance(secret_key, Secret) else Secret(secret_key)
        self.api_version = api_version
        self._hash_name = hash_name
        self._clock = clock or (lambda: datetime.now(UTC))
        self._http = httpx.AsyncClient(
            base_url=endpoint, transport=transport, timeout=_HTTP_TIMEOUT, follow_redirects=False
        )

    @classmethod
    def from_config(
        cls, config: ClientConfig, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> APIClient:
        return cls(
            config.endpoint,
            config.access_key,
            config.secret_key,
            api_version=config.api_version,
            transport=transport,
        )

    async def __aenter__(self) -> Self:
        await self._http.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with trio.move_on_after(_CLOSE_TIMEOUT, shield=True):
            await self._http.__aexit__(exc_type, exc, tb)

    def _sign(self, request: httpx.Request) -> None:
        date_value = self._clock().isoformat()
        request.headers["X-BackendAI-Version"] = self.api_version
        request.headers["Date"] = date_value
        content_type = request.headers.get("Content-Type", "application/octet-stream")
        request.headers["Authorization"] = sign_request(
            request.method,
            request.url.raw_path.decode("ascii"),
            date_value,
            request.headers["Host"],
            content_type.partition(";")[0].strip(),
            self.api_version,
            self.access_key,
            self._secret.reveal(),
            self._hash_name,
        )

    async def _send(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        signed: bool = True,
        stream: bool = False,
        **body: Any,
    ) -> httpx.Response:
        request = self._http.build_request(method, path, json=json, params=params, **body)
        if signed:
            self._sign(request)
        try:
            response = await self._http.send(request, stream=stream)
        except httpx.TransportError as e:
            raise self._unreachable(e) from e
        if response.is_error:
            try:
                await response.aread()
            finally:
                await response.aclose()
            raise APIResponseError.from_response(response)
        return response

    def signed_headers(self, method: str, path_qs: str) -> list[tuple[bytes, bytes]]:
        """Headers that sign a bodiless request for *path_qs* (websocket handshakes)."""
        request = self._http.build_request(method, path_qs)
        self._sign(request)
        names = ("Date", "X-BackendAI-Version", "Authorization")
        return [(n.encode(), request.headers[n].encode()) for n in names]

    @property
    def websocket_base(self) -> str:
        url = httpx.URL(self.endpoint)
        return str(url.copy_with(scheme="wss" if url.scheme == "https" else "ws")).rstrip("/")

    async def send_raw(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A signed request with any httpx body arguments (files=, content=, stream=)."""
        return await self._send(method, path, **kwargs)

    def _unreachable(self, e: httpx.TransportError) -> UnavailableError:
        return UnavailableError(
            f"cannot reach the manager at {self.endpoint}: {str(e) or type(e).__name__}"
        )

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send a signed request; an HTTP error status raises :class:`APIResponseError`."""
        return await self._send(method, path, json=json, params=params)

    async def get_version(self) -> dict[str, Any]:
        """``GET /`` (unsigned, as the official client probes it): API and manager version."""
        return _expect_dict(await self._send("GET", "/", signed=False))

    async def create_session(
        self,
        image: str,
        name: str | None = None,
        *,
        type: str = "interactive",
        resources: Mapping[str, str] | None = None,
        enqueue_only: bool = False,
        max_wait: float = 0,
        reuse: bool = False,
        group: str | None = None,
        environ: Mapping[str, str] | None = None,
        startup_command: str | None = None,
        tag: str | None = None,
        cluster_size: int = 1,
        priority: int | None = None,
        preemptible: bool | None = None,
        dependencies: Sequence[str] | None = None,
        starts_at: str | None = None,
    ) -> dict[str, Any]:
        """``POST /session``: ``{sessionId, sessionName, status, servicePorts, created}``.

        Scheduling: *priority* orders the queue; *preemptible* lets a higher-priority
        session stop this one; *dependencies* (ids or names) must finish successfully
        first; *starts_at* (ISO 8601 or a delay such as ``2h``) delays a batch session.
        """
        body: dict[str, Any] = {
            "image": image,
            # The official client always names a session; so do we.
            "sessionName": name or f"session-{secrets.token_hex(4)}",
            "type": type,
            "clusterSize": cluster_size,
            "config": {"resources": dict(resources or {}), "environ": dict(environ or {})},
            "enqueueOnly": enqueue_only,
            "maxWaitSeconds": max_wait,
            "reuseIfExists": reuse,
        }
        optional = {
            "group": group,
            "startupCommand": startup_command,
            "tag": tag,
            "priority": priority,
            "preemptible": preemptible,
            "dependencies": None if dependencies is None else list(dependencies),
            "startsAt": starts_at,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        return _expect_dict(await self._send("POST", "/session", json=body))

    async def get_session(self, session_id: str) -> dict[str, Any]:
        """``GET /session/{id}`` (a name or a UUID)."""
        return _expect_dict(await self._send("GET", _session_path(session_id)))

    async def list_sessions(
        self, status: str | None = None, *, all: bool = False
    ) -> list[dict[str, Any]]:
        """``GET /session?status=&all=`` -> our manager's ``sessions`` list, newest first.

        *status* may list several (``PENDING,RUNNING``); *all* asks for every owner's
        sessions (superadmins only).  Not in the official dialect, which lists via GraphQL.
        """
        params = {"status": status} if status else {}
        if all:
            params["all"] = "true"
        body = _expect_dict(await self._send("GET", "/session", params=params))
        sessions = body.get("sessions")
        if not isinstance(sessions, list):
            raise APIResponseError(
                200, "invalid-response", "Invalid response from the manager", "no 'sessions' list"
            )
        return [s for s in sessions if isinstance(s, dict)]

    async def destroy_session(self, session_id: str, *, forced: bool = False) -> dict[str, Any]:
        """``DELETE /session/{id}``: cancel a pending session, terminate a live one."""
        params = {"forced": "true"} if forced else {}
        response = await self._send("DELETE", _session_path(session_id), params=params)
        return _expect_dict(response)

    async def get_logs(self, session_id: str) -> str:
        """``GET /session/{id}/logs``: the container output of the main kernel."""
        body = _expect_dict(await self._send("GET", _session_path(session_id, "/logs")))
        result = body.get("result")
        logs = result.get("logs") if isinstance(result, dict) else None
        return logs if isinstance(logs, str) else ""

    @asynccontextmanager
    async def stream_events(
        self,
        session_name: str | None = None,
        session_id: str | None = None,
        scope: str = "*",
    ) -> AsyncIterator[AsyncIterator[ServerSentEvent]]:
        """``GET /events/session``: ``async with api.stream_events(...) as events:``.

        Iterating ends when the server closes the stream or sends ``server_close``.
        """
        params = {"scope": scope}
        if session_name is not None:
            params["sessionName"] = session_name
        if session_id is not None:
            params["sessionId"] = session_id
        response = await self._send("GET", "/events/session", params=params, stream=True)
        try:
            yield self._iter_events(response)
        finally:
            with trio.move_on_after(_CLOSE_TIMEOUT, shield=True):
                await response.aclose()

    async def _iter_events(self, response: httpx.Response) -> AsyncIterator[ServerSentEvent]:
        decoder = SSEDecoder()
        try:
            async for line in response.aiter_lines():
                event = decoder.feed(line)
                if event is None:
                    continue
                if event.event == "server_close":
                    return
                yield event
        except httpx.TransportError as e:
            raise self._unreachable(e) from e
