"""Short-lived signed tokens for apps, and the cookies they are exchanged for.  Pure.

A token is ``<base64url JSON claims>.<base64url HMAC-SHA256>`` keyed by the
cluster secret.  Claims: ``kind`` ("token" from the manager, "cookie" from the
proxy), ``route`` (``<session id>/<app>``), ``owner`` (the access key that
owns the app) and ``exp`` (UNIX time).  A token or cookie is good only for
the route it names, only until it expires, and only in its own kind.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "Claims",
    "TokenError",
    "cookie_name",
    "forward_key",
    "forward_preamble",
    "sign",
    "verify",
]

Kind = Literal["token", "cookie"]


class TokenError(ValueError):
    """A token that is forged, expired, malformed, or meant for something else."""


@dataclass(frozen=True)
class Claims:
    kind: Kind
    route: str
    owner: str
    exp: float


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: str, payload: str) -> str:
    return _b64(hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest())


def sign(secret: str, claims: Claims) -> str:
    body = {"kind": claims.kind, "route": claims.route, "owner": claims.owner, "exp": claims.exp}
    payload = _b64(json.dumps(body, separators=(",", ":"), sort_keys=True).encode())
    return f"{payload}.{_mac(secret, payload)}"


def verify(secret: str, token: str, *, kind: Kind, route: str, now: float) -> Claims:
    """The claims of *token* if it is genuine, unexpired, of *kind* and for *route*."""
    payload, sep, mac = token.partition(".")
    if not sep or not hmac.compare_digest(mac.encode(), _mac(secret, payload).encode()):
        raise TokenError("the signature does not match (forged or damaged)")
    try:
        body = json.loads(_unb64(payload))
        claims = Claims(body["kind"], str(body["route"]), str(body["owner"]), float(body["exp"]))
    except (ValueError, KeyError, TypeError) as e:
        raise TokenError(f"malformed claims ({e})") from None
    if claims.kind != kind:
        raise TokenError(f"a {claims.kind} is not a {kind}")
    if claims.route != route:
        raise TokenError(f"it is for another app ({claims.route!r}, not {route!r})")
    if claims.exp < now:
        raise TokenError(f"it expired {now - claims.exp:.0f} s ago")
    return claims


def cookie_name(route: str) -> str:
    """One cookie per app: ports share a host's cookies, so the name tells apps apart."""
    return "backendai_app_" + hashlib.sha256(route.encode()).hexdigest()[:16]


def forward_key(secret: str) -> str:
    """The key app forwards are opened with, derived from the cluster secret (so that app
    proxies' worker processes and settings need not hold the secret itself)."""
    return hmac.new(secret.encode(), b"backendai app forward", hashlib.sha256).hexdigest()


def forward_preamble(key: str, route: str) -> bytes:
    """What is sent first on a connection to an agent's forward of app *route*
    (``<session id>/<app>``): the forward carries nobody else's, and only to its own app
    (a stale route that now points at another app's forward is refused there)."""
    mac = hmac.new(key.encode(), f"forward {route}".encode(), hashlib.sha256).hexdigest()
    return f"BACKENDAI-FORWARD {mac}\r\n".encode()
