"""Backend.AI request signing: pure functions used by the client and the manager.

A signed request carries ``Authorization: BackendAI signMethod=HMAC-SHA256,
credential=<access key>:<hex signature>``.  The signature is an HMAC over::

    METHOD
    <path with query, exactly as sent on the request line>
    <raw Date (or X-BackendAI-Date) header value>
    host:<Host header>
    content-type:<media type, lower case; application/octet-stream when absent>
    x-backendai-version:<X-BackendAI-Version header>
    <hex digest of the empty byte string>

keyed with ``HMAC(HMAC(secret_key, "YYYYMMDD" of the request date), host)``; the
same hash (named by ``signMethod``) is used throughout.  The body is not signed.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import NamedTuple

from backendai.errors import AuthenticationFailed

__all__ = [
    "AUTH_SCHEME",
    "DEFAULT_CONTENT_TYPE",
    "SUPPORTED_HASHES",
    "ParsedAuthorization",
    "compute_signature",
    "normalize_content_type",
    "parse_authorization",
    "parse_date",
    "sign_request",
    "string_to_sign",
    "verify_signature",
]

AUTH_SCHEME = "BackendAI"
# What a server assumes when a request has no Content-Type (the official client signs
# this for its event-stream and websocket requests, which carry no such header).
DEFAULT_CONTENT_TYPE = "application/octet-stream"
# Hashes a signMethod may name (``HMAC-SHA256`` -> sha256).  MD5 is refused.
SUPPORTED_HASHES = frozenset(
    {
        "sha1",
        "sha224",
        "sha256",
        "sha384",
        "sha512",
        "sha3_224",
        "sha3_256",
        "sha3_384",
        "sha3_512",
        "blake2b",
        "blake2s",
    }
)
_EXPECTED_FORM = f"'{AUTH_SCHEME} signMethod=HMAC-SHA256, credential=<access key>:<signature>'"


class ParsedAuthorization(NamedTuple):
    """The parts of an ``Authorization: BackendAI ...`` header."""

    sign_method: str
    access_key: str
    signature: str

    @property
    def hash_name(self) -> str:
        """The hashlib name of the sign method (``HMAC-SHA256`` -> ``sha256``)."""
        return self.sign_method.partition("-")[2].lower()


def _check_hash(hash_name: str) -> None:
    if hash_name not in SUPPORTED_HASHES:
        supported = ", ".join(sorted(SUPPORTED_HASHES))
        raise AuthenticationFailed(f"unsupported hash {hash_name!r}; supported: {supported}")


def parse_date(raw: str) -> datetime:
    """Parse a request date, ISO 8601 or RFC 1123; a date without a zone is UTC."""
    value = raw.strip()
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        try:
            parsed = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            raise AuthenticationFailed(
                f"cannot parse the request date {raw!r}; expected ISO 8601 "
                "('2023-06-15T12:00:00+00:00') or RFC 1123 ('Thu, 15 Jun 2023 12:00:00 GMT')"
            ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def normalize_content_type(header_value: str | None) -> str:
    """The media type to sign for a Content-Type header value (parameters dropped)."""
    if header_value is None:
        return DEFAULT_CONTENT_TYPE
    media_type = header_value.partition(";")[0].strip().lower()
    return media_type or DEFAULT_CONTENT_TYPE


def string_to_sign(
    method: str,
    path_with_query: str,
    date_value: str,
    host: str,
    content_type: str,
    api_version: str,
    hash_name: str = "sha256",
) -> str:
    """The exact text that is signed (see the module docstring)."""
    _check_hash(hash_name)
    return "\n".join(
        [
            method.upper(),
            path_with_query,
            date_value,
            f"host:{host}",
            f"content-type:{content_type.lower()}",
            f"x-backendai-version:{api_version}",
            hashlib.new(hash_name, b"").hexdigest(),
        ]
    )


def compute_signature(
    method: str,
    path_with_query: str,
    date_value: str,
    host: str,
    content_type: str,
    api_version: str,
    secret_key: str,
    hash_name: str = "sha256",
) -> str:
    """The hex signature of a request, keyed by date and host."""
    text = string_to_sign(
        method, path_with_query, date_value, host, content_type, api_version, hash_name
    )
    day = parse_date(date_value)
    day_stamp = f"{day.year:04d}{day.month:02d}{day.day:02d}"
    k1 = hmac.new(secret_key.encode(), day_stamp.encode(), hash_name).digest()
    k2 = hmac.new(k1, host.encode(), hash_name).digest()
    return hmac.new(k2, text.encode(), hash_name).hexdigest()


def sign_request(
    method: str,
    path_with_query: str,
    date_value: str,
    host: str,
    content_type: str,
    api_version: str,
    access_key: str,
    secret_key: str,
    hash_name: str = "sha256",
) -> str:
    """The value of the ``Authorization`` header for a request."""
    signature = compute_signature(
        method, path_with_query, date_value, host, content_type, api_version, secret_key, hash_name
    )
    return f"{AUTH_SCHEME} signMethod=HMAC-{hash_name.upper()}, credential={access_key}:{signature}"


def parse_authorization(header: str | None) -> ParsedAuthorization:
    """Split an Authorization header; AuthenticationFailed names what is wrong with it."""
    if header is None or not header.strip():
        raise AuthenticationFailed(f"missing Authorization header; expected {_EXPECTED_FORM}")
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != AUTH_SCHEME.lower():
        raise AuthenticationFailed(
            f"Authorization scheme {scheme!r} is not supported; expected {_EXPECTED_FORM}"
        )
    params: dict[str, str] = {}
    for item in rest.split(","):
        if not item.strip():
            continue
        key, sep, value = item.strip().partition("=")
        if not sep or not key.strip():
            raise AuthenticationFailed(
                f"malformed Authorization parameter {key.strip()!r}: expected key=value "
                f"pairs separated by commas, as in {_EXPECTED_FORM}"
            )
        params[key.strip().lower()] = value.strip()
    sign_method = params.get("signmethod")
    if not sign_method:
        raise AuthenticationFailed(
            f"Authorization header lacks signMethod; expected {_EXPECTED_FORM}"
        )
    mac, _, hash_part = sign_method.partition("-")
    if mac.upper() != "HMAC" or hash_part.lower() not in SUPPORTED_HASHES:
        supported = ", ".join(f"HMAC-{h.upper()}" for h in sorted(SUPPORTED_HASHES))
        raise AuthenticationFailed(
            f"unsupported signMethod {sign_method!r}; supported: {supported}"
        )
    credential = params.get("credential")
    if not credential:
        raise AuthenticationFailed(
            f"Authorization header lacks credential; expected {_EXPECTED_FORM}"
        )
    access_key, sep, signature = credential.rpartition(":")
    if not sep or not access_key:
        raise AuthenticationFailed(
            "Authorization credential must be '<access key>:<signature>'; "
            f"got no {'access key' if sep else 'colon'} in it"
        )
    digest_size = hashlib.new(hash_part.lower()).digest_size
    if len(signature) != 2 * digest_size or not _is_hex(signature):
        raise AuthenticationFailed(
            f"the signature of access key {access_key!r} is not a hex {sign_method} digest "
            f"({2 * digest_size} hex digits, got {len(signature)} characters)"
        )
    return ParsedAuthorization(sign_method, access_key, signature.lower())


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in text)


def verify_signature(
    method: str,
    path_with_query: str,
    date_value: str,
    host: str,
    content_type: str,
    api_version: str,
    secret_key: str,
    signature: str,
    hash_name: str = "sha256",
) -> bool:
    """Whether *signature* signs this request; compared in constant time."""
    expected = compute_signature(
        method, path_with_query, date_value, host, content_type, api_version, secret_key, hash_name
    )
    return hmac.compare_digest(expected.encode(), signature.lower().encode(errors="replace"))
