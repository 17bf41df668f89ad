"""Registry authentication: HTTP Basic, and Docker's bearer-token flow, as an ``httpx.Auth``.

A registry answers an unauthenticated request with ``401`` and a challenge:
``WWW-Authenticate: Basic realm="..."`` (htpasswd) or ``Bearer realm="https://auth/token",
service="registry",scope="repository:library/python:pull"`` (Docker Hub, Harbor, any
registry with token auth).  For a bearer challenge we ask the realm for a token (``GET
realm?service=...&scope=...``, with Basic credentials when we have them, anonymously
otherwise), then repeat the request with ``Authorization: Bearer <token>``.  Tokens are
kept per scope until shortly before they expire; a Basic challenge makes later requests
send Basic credentials up front.

The parsing is pure and tested table-driven; :class:`RegistryAuth` is the httpx glue.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Generator
from dataclasses import dataclass

import httpx

from ..config import Secret
from ..errors import RegistryAuthFailed

__all__ = ["Challenge", "RegistryAuth", "parse_challenge", "scope_for_path"]

# Seconds a token lives when the token server does not say (the token spec's default).
DEFAULT_TOKEN_LIFETIME = 60.0
# A token is renewed this long before it expires.
_RENEW_MARGIN = 5.0
_PARAM_RE = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))\s*,?')
_REPO_PATH_RE = re.compile(r"^/v2/(.+?)/(?:manifests|blobs|tags)/")


@dataclass(frozen=True)
class Challenge:
    scheme: str  # "basic" | "bearer" (lower case)
    realm: str = ""
    service: str = ""
    scope: str = ""


def parse_challenge(header: str | None) -> Challenge | None:
    """``WWW-Authenticate`` -> Challenge; None when absent or of a scheme we do not speak."""
    if not header:
        return None
    scheme, _, params = header.strip().partition(" ")
    scheme = scheme.lower()
    if scheme not in ("basic", "bearer"):
        return None
    values: dict[str, str] = {}
    for m in _PARAM_RE.finditer(params):
        quoted, bare = m.group(2), m.group(3)
        value = quoted.replace('\\"', '"') if quoted is not None else bare
        values[m.group(1).lower()] = value
    return Challenge(
        scheme, values.get("realm", ""), values.get("service", ""), values.get("scope", "")
    )


def scope_for_path(path: str) -> str:
    """The token scope a request path needs (for reusing a token before a challenge)."""
    if path.rstrip("/") == "/v2/_catalog":
        return "registry:catalog:*"
    m = _REPO_PATH_RE.match(path)
    return f"repository:{m.group(1)}:pull" if m else ""


def _basic(username: str, password: Secret) -> str:
    raw = f"{username}:{password.reveal()}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


class RegistryAuth(httpx.Auth):
    """Basic or bearer-token authentication against one registry (see the module docstring)."""

    requires_response_body = True

    def __init__(self, registry: str, username: str = "", password: Secret | None = None) -> None:
        self._registry = registry
        self._username = username
        self._password = password or Secret("")
        self._basic_mode = False
        self._tokens: dict[str, tuple[str, float]] = {}  # scope -> (token, expires at)

    @property
    def _has_credentials(self) -> bool:
        return bool(self._username)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        scope = scope_for_path(request.url.path)
        cached = self._tokens.get(scope)
        if cached is not None and cached[1] > time.monotonic():
            request.headers["Authorization"] = f"Bearer {cached[0]}"
        elif self._basic_mode and self._has_credentials:
            request.headers["Authorization"] = _basic(self._username, self._password)
        response = yield request
        if response.status_code != 401:
            return
        challenge = parse_challenge(response.headers.get("WWW-Authenticate"))
        if challenge is None:
            return
        if challenge.scheme == "basic":
            if not self._has_credentials or self._basic_mode:
                return  # nothing (else) to offer: the caller reports the 401
            self._basic_mode = True
            request.headers["Authorization"] = _basic(self._username, self._password)
            yield request
            return
        if not challenge.realm:
            return
        token_request = self._token_request(challenge, scope)
        token_response = yield token_request
        token, lifetime = self._read_token(token_response, challenge)
        self._tokens[challenge.scope or scope] = (token, time.monotonic() + lifetime)
        request.headers["Authorization"] = f"Bearer {token}"
        yield request

    def _token_request(self, challenge: Challenge, scope: str) -> httpx.Request:
        params = {}
        if challenge.service:
            params["service"] = challenge.service
        if challenge.scope or scope:
            params["scope"] = challenge.scope or scope
        if self._username:
            params["account"] = self._username
        headers = {}
        if self._has_credentials:
            headers["Authorization"] = _basic(self._username, self._password)
        return httpx.Request("GET", challenge.realm, params=params, headers=headers)

    def _read_token(self, response: httpx.Response, challenge: Challenge) -> tuple[str, float]:
        who = f"user {self._username!r}" if self._username else "anonymous access"
        if response.status_code in (401, 403):
            raise RegistryAuthFailed(
                f"registry {self._registry}: the token service {challenge.realm} refused "
                f"{who} ({response.status_code}); check the registry's username and password"
            )
        try:
            body = response.json()
            token = body.get("token") or body.get("access_token")
            lifetime = float(body.get("expires_in") or DEFAULT_TOKEN_LIFETIME)
        except (ValueError, AttributeError, TypeError):
            token, lifetime = None, 0.0
        if response.status_code != 200 or not isinstance(token, str) or not token:
            raise RegistryAuthFailed(
                f"registry {self._registry}: the token service {challenge.realm} gave no token "
                f"for {who} ({response.status_code} {response.text[:200]!r})"
            )
        return token, max(lifetime - _RENEW_MARGIN, 1.0)
