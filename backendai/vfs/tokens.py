"""Transfer tokens: what the manager hands a client to move bytes through the storage proxy.

A token is a compact JWT (``HS256``: HMAC-SHA256) signed with a key derived
from the cluster secret, carrying the operation, volume, folder, path, size
(uploads), archive flag (downloads) and expiry.  The storage proxy trusts
nothing else the client sends: a token for folder A cannot name folder B,
an upload token cannot download, and an expired one is refused.  Pure
functions; *now* is passed in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import asdict, dataclass
from typing import Any, Literal

from ..config import Secret
from ..errors import AuthenticationFailed, PermissionDenied

__all__ = ["Operation", "TransferClaims", "issue_token", "verify_token"]

Operation = Literal["upload", "download"]
_HEADER = {"alg": "HS256", "typ": "JWT"}
_KEY_LABEL = b"backendai storage transfer token v1"


@dataclass(frozen=True)
class TransferClaims:
    op: Operation
    volume: str
    folder: str
    path: str
    exp: float
    size: int | None = None  # uploads: the file's length in bytes
    archive: bool = False  # downloads: a directory as a zip


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _key(secret: Secret) -> bytes:
    return hmac.new(secret.reveal().encode(), _KEY_LABEL, hashlib.sha256).digest()


def _sign(secret: Secret, signing_input: str) -> str:
    return _b64(hmac.new(_key(secret), signing_input.encode(), hashlib.sha256).digest())


def issue_token(secret: Secret, claims: TransferClaims) -> str:
    head = _b64(json.dumps(_HEADER, separators=(",", ":")).encode())
    body = _b64(json.dumps(asdict(claims), separators=(",", ":")).encode())
    return f"{head}.{body}.{_sign(secret, f'{head}.{body}')}"


def verify_token(secret: Secret, token: str, op: Operation, *, now: float) -> TransferClaims:
    """The claims of *token* if it is well formed, signed by us, for *op*, and not expired."""
    parts = token.split(".") if isinstance(token, str) else []
    if len(parts) != 3:
        raise AuthenticationFailed("transfer token is malformed; expected header.payload.signature")
    head, body, sig = parts
    if not hmac.compare_digest(sig.encode(), _sign(secret, f"{head}.{body}").encode()):
        raise AuthenticationFailed("transfer token has a bad signature")
    try:
        header = json.loads(_unb64(head))
        raw: dict[str, Any] = json.loads(_unb64(body))
        claims = TransferClaims(**raw)
    except (ValueError, TypeError) as e:
        raise AuthenticationFailed(f"transfer token payload is unreadable: {e}") from None
    if header.get("alg") != "HS256":
        raise AuthenticationFailed(
            f"transfer token algorithm {header.get('alg')!r}; expected HS256"
        )
    if claims.op != op:
        raise PermissionDenied(f"transfer token is for {claims.op!r}, not {op!r}")
    if not isinstance(claims.exp, int | float) or isinstance(claims.exp, bool):
        raise AuthenticationFailed(f"transfer token expiry {claims.exp!r} is not a time")
    if claims.exp <= now:
        raise AuthenticationFailed(f"transfer token expired {now - float(claims.exp):.0f} s ago")
    return claims
