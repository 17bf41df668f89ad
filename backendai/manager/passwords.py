"""Password hashing with scrypt (memory-hard KDF from the standard library).

A stored hash reads ``scrypt$<log2 N>$<r>$<p>$<salt b64>$<hash b64>``; the
parameters travel with it, so raising them later leaves old hashes verifiable.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

__all__ = ["hash_password", "verify_password"]

_LOG_N, _R, _P = 14, 8, 1  # 16 MiB of memory per hash; ~50 ms on a server core
_DKLEN = 32


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _kdf(password: str, salt: bytes, log_n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=1 << log_n,
        r=r,
        p=p,
        maxmem=256 * r * (1 << log_n) + 1024 * 1024,
        dklen=_DKLEN,
    )


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = _kdf(password, salt, _LOG_N, _R, _P)
    return f"scrypt${_LOG_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether *password* matches *stored*; a malformed *stored* never matches."""
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        return False
    try:
        log_n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, expected = base64.b64decode(parts[4]), base64.b64decode(parts[5])
    except ValueError:
        return False
    if not (1 <= log_n <= 20 and 1 <= r <= 32 and 1 <= p <= 16):
        return False
    return hmac.compare_digest(_kdf(password, salt, log_n, r, p), expected)
