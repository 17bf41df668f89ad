"""Server-side check of Backend.AI request signatures (no web framework in here).

The Quart app calls :func:`check_request_signature` from a ``before_request`` hook
with plain values: the method, the raw request target (path and query exactly as
received, percent-encoding intact), the headers, a keypair lookup and the time.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from backendai.client.signing import (
    normalize_content_type,
    parse_authorization,
    parse_date,
    verify_signature,
)
from backendai.config import Secret
from backendai.errors import AuthenticationFailed

__all__ = [
    "DATE_WINDOW",
    "SigningKeypair",
    "check_request_signature",
    "request_date",
]

# Seconds a request date may be away from the server clock, either way.
DATE_WINDOW = 900.0
_VERSION_RE = re.compile(r"^v\d+\.\d{8}$")
# Signed instead of a real secret for an unknown access key, so that both paths cost alike.
_DUMMY_SECRET = "0" * 40


class SigningKeypair(Protocol):
    """What the check needs from a keypair; the caller's own record type fits."""

    @property
    def secret_key(self) -> Secret: ...

    @property
    def is_active(self) -> bool: ...


K = TypeVar("K", bound=SigningKeypair)


def request_date(headers: Mapping[str, str], *, now: float, window: float = DATE_WINDOW) -> str:
    """The raw date header value, once it parses and lies within ``now ± window``."""
    raw = headers.get("date") or headers.get("x-backendai-date")
    if not raw:
        raise AuthenticationFailed(
            "missing Date or X-BackendAI-Date header; expected an ISO 8601 UTC time "
            "such as '2023-06-15T12:00:00+00:00'"
        )
    skew = parse_date(raw).timestamp() - now
    if abs(skew) > window:
        server_time = datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds")
        raise AuthenticationFailed(
            f"request date {raw!r} is {abs(skew):g} s {'ahead of' if skew > 0 else 'behind'} "
            f"the server time {server_time}; the accepted window is ±{window:g} s "
            "(check the client's clock)"
        )
    return raw


def _host_candidates(host: str) -> list[str]:
    """The Host header, and with an explicit default port if it has none.

    The official client signs the host of its endpoint URL as written: with
    ``http://example.org:80`` it signs ``example.org:80`` while sending ``Host: example.org``.
    """
    if host.endswith("]") or ":" not in host:
        return [host, f"{host}:80", f"{host}:443"]
    return [host]


async def check_request_signature(
    method: str,
    path_qs: str,
    headers: Mapping[str, str],
    lookup: Callable[[str], Awaitable[K | None]],
    *,
    now: float,
    window: float = DATE_WINDOW,
) -> K:
    """Authenticate a signed request and return the keypair that signed it.

    *path_qs* is the request target as received (``/session/x?owner_access_key=y``);
    *headers* may use any case; *lookup* maps an access key to its keypair or None;
    *now* is the server time (seconds since the epoch).  Every failure raises
    :class:`AuthenticationFailed` with a message that names the problem.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    version = lowered.get("x-backendai-version")
    if not version:
        raise AuthenticationFailed(
            "missing X-BackendAI-Version header; expected an API version such as 'v7.20230615'"
        )
    if not _VERSION_RE.match(version):
        raise AuthenticationFailed(
            f"X-BackendAI-Version {version!r} is not an API version such as 'v7.20230615'"
        )
    auth = parse_authorization(lowered.get("authorization"))
    date_value = request_date(lowered, now=now, window=window)
    host = lowered.get("host")
    if not host:
        raise AuthenticationFailed("missing Host header; the signature covers the host")
    content_type = normalize_content_type(lowered.get("content-type"))

    keypair = await lookup(auth.access_key)
    usable = keypair is not None and keypair.is_active
    secret = keypair.secret_key.reveal() if keypair is not None and usable else _DUMMY_SECRET
    matched = False
    for candidate in _host_candidates(host):
        matched |= verify_signature(
            method,
            path_qs,
            date_value,
            candidate,
            content_type,
            version,
            secret,
            auth.signature,
            auth.hash_name,
        )
    if keypair is None or not usable:
        raise AuthenticationFailed(
            f"access key {auth.access_key!r} is unknown or inactive (or its user is inactive)"
        )
    if not matched:
        raise AuthenticationFailed(
            f"signature mismatch for access key {auth.access_key!r}: the client must sign "
            f"method {method.upper()!r}, path {path_qs!r}, date {date_value!r}, host {host!r}, "
            f"content type {content_type!r} and version {version!r} with its secret key"
        )
    return keypair
