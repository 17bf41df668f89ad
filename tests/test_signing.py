"""Request signing (backendai.client.signing) and its server-side check (backendai.manager.auth)."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import re
from datetime import datetime

import pytest

from backendai.client.signing import (
    normalize_content_type,
    parse_authorization,
    parse_date,
    sign_request,
    verify_signature,
)
from backendai.config import Secret
from backendai.errors import AuthenticationFailed
from backendai.manager.auth import check_request_signature

AK = "AKIAIOSFODNN7EXAMPLE"
SK = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
VERSION = "v7.20230615"
DATE = "2023-06-15T12:34:56.123456+00:00"
NOW = datetime.fromisoformat(DATE).timestamp()
HOST = "127.0.0.1:8081"


def by_hand(method: str, path: str, date: str, day: str, host: str, ct: str, hash_name: str) -> str:
    """The scheme of the wire contract, written out independently of our code."""
    text = (
        f"{method}\n{path}\n{date}\nhost:{host}\ncontent-type:{ct}\n"
        f"x-backendai-version:{VERSION}\n{hashlib.new(hash_name, b'').hexdigest()}"
    )
    k1 = hmac.new(SK.encode(), day.encode(), hash_name).digest()
    k2 = hmac.new(k1, host.encode(), hash_name).digest()
    return hmac.new(k2, text.encode(), hash_name).hexdigest()


@pytest.mark.parametrize(
    ("method", "path", "date", "day", "host", "ct", "hash_name"),
    [
        ("GET", "/session/s1?owner_access_key=AK2", DATE, "20230615", HOST, "text/plain", "sha256"),
        ("POST", "/session", DATE, "20230615", "manager.example", "application/json", "sha256"),
        (
            "GET",
            "/events/session?scope=*",
            DATE,
            "20230615",
            HOST,
            "application/octet-stream",
            "sha512",
        ),
        # The key's day is that of the date as written, not converted to UTC.
        (
            "DELETE",
            "/session/x",
            "2023-06-16T01:00:00+09:00",
            "20230616",
            HOST,
            "text/plain",
            "sha1",
        ),
        ("GET", "/", "Thu, 15 Jun 2023 12:34:56 GMT", "20230615", HOST, "text/plain", "sha256"),
    ],
)
def test_known_vectors(
    method: str, path: str, date: str, day: str, host: str, ct: str, hash_name: str
) -> None:
    expected = by_hand(method, path, date, day, host, ct, hash_name)
    header = sign_request(method, path, date, host, ct, VERSION, AK, SK, hash_name)
    assert header == (f"BackendAI signMethod=HMAC-{hash_name.upper()}, credential={AK}:{expected}")
    parsed = parse_authorization(header)
    assert parsed == (f"HMAC-{hash_name.upper()}", AK, expected)
    assert parsed.hash_name == hash_name


REQUEST = {
    "method": "GET",
    "path_with_query": "/session/s1?x=1",
    "date_value": DATE,
    "host": HOST,
    "content_type": "text/plain",
    "api_version": VERSION,
}


@pytest.mark.parametrize("hash_name", ["sha256", "sha1", "sha384", "sha512", "sha3_256"])
def test_round_trip(hash_name: str) -> None:
    sig = parse_authorization(
        sign_request(**REQUEST, access_key=AK, secret_key=SK, hash_name=hash_name)
    ).signature
    assert verify_signature(**REQUEST, secret_key=SK, signature=sig, hash_name=hash_name)
    assert verify_signature(**REQUEST, secret_key=SK, signature=sig.upper(), hash_name=hash_name)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("method", "POST"),
        ("path_with_query", "/session/s2?x=1"),
        ("path_with_query", "/session/s1?x=2"),
        ("path_with_query", "/session/s1"),
        ("date_value", "2023-06-15T12:34:57.123456+00:00"),
        ("date_value", "2023-06-15T12:34:56.123456Z"),  # same instant, other text
        ("host", "127.0.0.1:8082"),
        ("host", "127.0.0.1"),
        ("content_type", "application/json"),
        ("api_version", "v6.20220615"),
        ("secret_key", SK[:-1] + "Z"),
    ],
)
def test_tampered_request_is_rejected(field: str, value: str) -> None:
    sig = parse_authorization(sign_request(**REQUEST, access_key=AK, secret_key=SK)).signature
    changed = {**REQUEST, "secret_key": SK, field: value}
    assert not verify_signature(**changed, signature=sig)


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        (None, "missing Authorization header"),
        ("   ", "missing Authorization header"),
        (f"Bearer {AK}", "scheme 'Bearer' is not supported"),
        ("BackendAI credential=AK:" + "0" * 64, "lacks signMethod"),
        ("BackendAI signMethod=HMAC-SHA256", "lacks credential"),
        (
            "BackendAI signMethod=HMAC-MD5, credential=AK:" + "0" * 32,
            "unsupported signMethod 'HMAC-MD5'",
        ),
        ("BackendAI signMethod=RSA-SHA256, credential=AK:" + "0" * 64, "unsupported signMethod"),
        (
            "BackendAI signMethod=HMAC-SHA256, credential",
            "malformed Authorization parameter 'credential'",
        ),
        ("BackendAI signMethod=HMAC-SHA256, credential=AK" + "0" * 64, "no colon"),
        ("BackendAI signMethod=HMAC-SHA256, credential=:" + "0" * 64, "no access key"),
        ("BackendAI signMethod=HMAC-SHA256, credential=AK:abc", "64 hex digits, got 3"),
        ("BackendAI signMethod=HMAC-SHA256, credential=AK:" + "g" * 64, "not a hex HMAC-SHA256"),
    ],
)
def test_malformed_authorization(header: str | None, problem: str) -> None:
    with pytest.raises(AuthenticationFailed, match=problem.replace("(", r"\(")):
        parse_authorization(header)


def test_authorization_parsing_is_lenient_about_spacing_and_case() -> None:
    sig = "a" * 64
    parsed = parse_authorization(
        f"backendai   signmethod=hmac-sha256 ,credential = {AK}:{sig.upper()}"
    )
    assert parsed == ("hmac-sha256", AK, sig)


@pytest.mark.parametrize(
    ("raw", "iso"),
    [
        (DATE, DATE),
        ("2023-06-15T12:34:56Z", "2023-06-15T12:34:56+00:00"),
        ("2023-06-15T12:34:56", "2023-06-15T12:34:56+00:00"),
        ("Thu, 15 Jun 2023 12:34:56 GMT", "2023-06-15T12:34:56+00:00"),
        ("Thu, 15 Jun 2023 21:34:56 +0900", "2023-06-15T21:34:56+09:00"),
    ],
)
def test_parse_date(raw: str, iso: str) -> None:
    assert parse_date(raw).isoformat() == iso


def test_unparsable_date_names_value_and_forms() -> None:
    with pytest.raises(AuthenticationFailed, match=r"'yesterday'.*ISO 8601.*RFC 1123"):
        parse_date("yesterday")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "application/octet-stream"),
        ("", "application/octet-stream"),
        ("Application/JSON", "application/json"),
        ("multipart/form-data; boundary=xyz", "multipart/form-data"),
    ],
)
def test_normalize_content_type(value: str | None, expected: str) -> None:
    assert normalize_content_type(value) == expected


# --- the manager's check ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Keypair:
    access_key: str
    secret_key: Secret
    is_active: bool = True


KEYPAIRS = {
    AK: Keypair(AK, Secret(SK)),
    "AKINACTIVE": Keypair("AKINACTIVE", Secret(SK), is_active=False),
}


async def lookup(access_key: str) -> Keypair | None:
    return KEYPAIRS.get(access_key)


def signed_headers(
    *, access_key: str = AK, date: str = DATE, host: str = HOST, path: str = "/session/s1?x=1"
) -> dict[str, str]:
    auth = sign_request("GET", path, date, host, "text/plain", VERSION, access_key, SK)
    return {
        "Host": host,
        "Date": date,
        "Content-Type": "text/plain",
        "X-BackendAI-Version": VERSION,
        "Authorization": auth,
    }


async def check(
    headers: dict[str, str], *, now: float = NOW, path: str = "/session/s1?x=1"
) -> Keypair:
    return await check_request_signature("GET", path, headers, lookup, now=now)


async def test_check_accepts_a_signed_request() -> None:
    assert (await check(signed_headers())).access_key == AK
    lowered = {k.lower(): v for k, v in signed_headers().items()}
    assert (await check(lowered)).access_key == AK


@pytest.mark.parametrize("offset", [-900.0, -899.5, 0.0, 899.5, 900.0])
async def test_date_window_edges_accepted(offset: float) -> None:
    assert (await check(signed_headers(), now=NOW + offset)).access_key == AK


@pytest.mark.parametrize(
    ("offset", "side"), [(-900.001, "ahead of"), (900.001, "behind"), (86400.0, "behind")]
)
async def test_date_outside_window_rejected(offset: float, side: str) -> None:
    with pytest.raises(
        AuthenticationFailed, match=rf"request date '{re.escape(DATE)}' is [\d.]+ s {side}.*±900 s"
    ):
        await check(signed_headers(), now=NOW + offset)


async def test_x_backendai_date_is_accepted_when_date_is_absent() -> None:
    headers = signed_headers()
    headers["X-BackendAI-Date"] = headers.pop("Date")
    assert (await check(headers)).access_key == AK


async def test_missing_content_type_means_octet_stream() -> None:
    auth = sign_request(
        "GET", "/events/session", DATE, HOST, "application/octet-stream", VERSION, AK, SK
    )
    headers = {"Host": HOST, "Date": DATE, "X-BackendAI-Version": VERSION, "Authorization": auth}
    assert (await check(headers, path="/events/session")).access_key == AK


async def test_host_signed_with_explicit_default_port() -> None:
    headers = signed_headers(host="manager.example:80")
    headers["Host"] = "manager.example"
    assert (await check(headers)).access_key == AK


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"X-BackendAI-Version": None}, "missing X-BackendAI-Version"),
        ({"X-BackendAI-Version": "7"}, "'7' is not an API version"),
        ({"Date": None}, "missing Date or X-BackendAI-Date"),
        ({"Date": "soon"}, "cannot parse the request date 'soon'"),
        ({"Host": None}, "missing Host header"),
        ({"Host": "127.0.0.1:9999"}, "signature mismatch for access key 'AKIAIOSFODNN7EXAMPLE'"),
        ({"Content-Type": "application/json"}, "content type 'application/json'"),
        ({"Authorization": None}, "missing Authorization header"),
    ],
)
async def test_check_names_the_problem(change: dict[str, str | None], problem: str) -> None:
    headers = signed_headers()
    for name, value in change.items():
        if value is None:
            del headers[name]
        else:
            headers[name] = value
    with pytest.raises(AuthenticationFailed, match=problem):
        await check(headers)


async def test_tampered_path_rejected() -> None:
    with pytest.raises(AuthenticationFailed, match="path '/session/s2'"):
        await check(signed_headers(), path="/session/s2")


@pytest.mark.parametrize("access_key", ["AKUNKNOWN", "AKINACTIVE"])
async def test_unknown_and_inactive_keys_look_alike(access_key: str) -> None:
    with pytest.raises(AuthenticationFailed) as info:
        await check(signed_headers(access_key=access_key))
    assert str(info.value) == (
        f"access key {access_key!r} is unknown or inactive (or its user is inactive)"
    )
