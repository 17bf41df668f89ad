"""Transfer tokens and download ranges: pure functions, table-driven."""

from __future__ import annotations

import base64
import json

import pytest

from backendai.config import Secret
from backendai.errors import AuthenticationFailed, PermissionDenied
from backendai.vfs.downloads import RangeNotSatisfiable, parse_range
from backendai.vfs.tokens import TransferClaims, issue_token, verify_token

SECRET = Secret("s3cret")
NOW = 1_800_000_000.0
CLAIMS = TransferClaims("upload", "local", "folderA", "data/x.bin", NOW + 60, size=10)


def _repack(token: str, **changes: object) -> str:
    head, body, sig = token.split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload.update(changes)
    new = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    return f"{head}.{new}.{sig}"


def test_round_trip() -> None:
    assert verify_token(SECRET, issue_token(SECRET, CLAIMS), "upload", now=NOW) == CLAIMS


@pytest.mark.parametrize(
    ("token", "op", "now", "error", "message"),
    [
        (_repack(issue_token(SECRET, CLAIMS), folder="folderB"), "upload", NOW,
         AuthenticationFailed, "bad signature"),
        (_repack(issue_token(SECRET, CLAIMS), path="../../etc"), "upload", NOW,
         AuthenticationFailed, "bad signature"),
        (issue_token(SECRET, CLAIMS), "download", NOW, PermissionDenied,
         "for 'upload', not 'download'"),
        (issue_token(SECRET, CLAIMS), "upload", NOW + 61, AuthenticationFailed, "expired 1 s ago"),
        (issue_token(Secret("other"), CLAIMS), "upload", NOW, AuthenticationFailed,
         "bad signature"),
        ("not-a-token", "upload", NOW, AuthenticationFailed, "malformed"),
        ("", "upload", NOW, AuthenticationFailed, "malformed"),
    ],
)  # fmt: skip
def test_refused(token: str, op: str, now: float, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        verify_token(SECRET, token, op, now=now)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 100, None),
        ("bytes=0-9", 100, (0, 9)),
        ("bytes=90-", 100, (90, 99)),
        ("bytes=-10", 100, (90, 99)),
        ("bytes=-500", 100, (0, 99)),
        ("bytes=50-1000", 100, (50, 99)),
        ("bytes=0-1,5-6", 100, None),  # several ranges: the whole file
        ("items=0-1", 100, None),
        ("bytes=x-y", 100, None),
    ],
)
def test_ranges(header: str | None, size: int, expected: tuple[int, int] | None) -> None:
    assert parse_range(header, size) == expected


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=100-200", "bytes=-0", "bytes=9-3"])
def test_unsatisfiable_ranges(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, 100)
