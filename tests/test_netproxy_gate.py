"""App tokens, per-app cookies and the auth gate (a clock is passed in; spent tokens may be
recorded in a directory)."""

from __future__ import annotations

from pathlib import Path

import pytest

from backendai.netproxy import (
    AuthGate,
    Claims,
    Route,
    SpentTokens,
    TokenError,
    client_allowed,
    cookie_name,
    parse_head,
    sign,
    verify,
)

SECRET = "cluster-secret"
NOW = 1_800_000_000.0
APP = Route("127.0.0.1", 8888, name="s1/jupyter", owner="AKIAOWNER")


def token(
    route: str = "s1/jupyter",
    owner: str = "AKIAOWNER",
    exp: float = NOW + 60,
    kind: str = "token",
    secret: str = SECRET,
) -> str:
    return sign(secret, Claims(kind, route, owner, exp))  # type: ignore[arg-type]


def test_a_genuine_token_verifies() -> None:
    claims = verify(SECRET, token(), kind="token", route="s1/jupyter", now=NOW)
    assert claims == Claims("token", "s1/jupyter", "AKIAOWNER", NOW + 60)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (token(exp=NOW - 5), "it expired 5 s ago"),
        (token(secret="another-secret"), "the signature does not match"),
        (token() + "x", "the signature does not match"),
        (token().replace(".", ""), "the signature does not match"),
        ("", "the signature does not match"),
        (token(route="s2/jupyter"), "it is for another app ('s2/jupyter', not 's1/jupyter')"),
        (token(kind="cookie"), "a cookie is not a token"),
    ],
)
def test_bad_tokens_are_refused_with_the_reason(value: str, message: str) -> None:
    with pytest.raises(TokenError, match=message.replace("(", r"\(").replace(")", r"\)")):
        verify(SECRET, value, kind="token", route="s1/jupyter", now=NOW)


def test_claims_cannot_be_edited_without_the_secret() -> None:
    genuine = token(owner="AKIAOTHER")
    mac = genuine.partition(".")[2]
    forged_payload = token(owner="AKIAOWNER").partition(".")[0]
    with pytest.raises(TokenError, match="signature"):
        verify(SECRET, f"{forged_payload}.{mac}", kind="token", route="s1/jupyter", now=NOW)


def test_cookie_names_differ_per_app() -> None:
    assert cookie_name("s1/jupyter") != cookie_name("s2/jupyter")
    assert cookie_name("s1/jupyter").startswith("backendai_app_")


def request(target: str = "/", cookie: str | None = None) -> bytes:
    extra = f"Cookie: other=1; {cookie}\r\n" if cookie else ""
    return f"GET {target} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode()


def gate(secure: bool = False) -> AuthGate:
    return AuthGate(SECRET, cookie_ttl=3600, secure=secure, clock=lambda: NOW)


def status(answer: bytes | None) -> int | None:
    return None if answer is None else int(answer.split(b" ", 2)[1])


def test_anonymous_requests_to_an_authenticated_app_get_401() -> None:
    answer = gate()(parse_head(request()), APP, "127.0.0.1")
    assert status(answer) == 401
    assert answer is not None
    assert b"open to its owner only" in answer


def test_a_token_is_exchanged_for_a_cookie_and_a_clean_redirect() -> None:
    answer = gate(secure=True)(
        parse_head(request(f"/lab?a=1&backendai_token={token()}&b=2")), APP, "10.0.0.1"
    )
    assert answer is not None
    assert status(answer) == 302
    head = answer.split(b"\r\n\r\n")[0].decode()
    assert "\r\nLocation: /lab?a=1&b=2\r\n" in head
    cookie_line = next(line for line in head.split("\r\n") if line.startswith("Set-Cookie: "))
    name, _, rest = cookie_line.removeprefix("Set-Cookie: ").partition("=")
    assert name == cookie_name("s1/jupyter")
    assert "; Path=/; Max-Age=3600; HttpOnly; SameSite=Lax; Secure" in rest
    value = rest.split(";")[0]
    # The cookie then lets requests through, until it expires.
    assert gate()(parse_head(request("/api", f"{name}={value}")), APP, "10.0.0.1") is None
    later = AuthGate(SECRET, cookie_ttl=3600, clock=lambda: NOW + 3601)
    assert status(later(parse_head(request("/api", f"{name}={value}")), APP, "10.0.0.1")) == 401


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (token(exp=NOW - 1), b"it expired"),
        (token(secret="forged"), b"the signature does not match"),
        (token(route="s9/jupyter"), b"it is for another app"),
        (token(owner="AKIAINTRUDER"), b"belongs to another user"),
    ],
)
def test_bad_tokens_get_403(value: str, message: bytes) -> None:
    answer = gate()(parse_head(request(f"/?backendai_token={value}")), APP, "127.0.0.1")
    assert status(answer) == 403
    assert answer is not None
    assert message in answer


@pytest.mark.parametrize(
    "cookie",
    [
        # Another app's cookie, renamed to this app's cookie name.
        lambda: sign(SECRET, Claims("cookie", "s2/jupyter", "AKIAOWNER", NOW + 60)),
        # A token where a cookie belongs.
        lambda: token(),
        # A cookie of this app for another user.
        lambda: sign(SECRET, Claims("cookie", "s1/jupyter", "AKIAINTRUDER", NOW + 60)),
        lambda: "garbage",
    ],
)
def test_cookies_not_minted_for_this_app_and_owner_do_not_pass(cookie: object) -> None:
    value = cookie()  # type: ignore[operator]
    answer = gate()(
        parse_head(request("/", f"{cookie_name('s1/jupyter')}={value}")), APP, "127.0.0.1"
    )
    assert status(answer) == 401


def test_public_apps_need_no_login() -> None:
    public = Route("127.0.0.1", 80, name="s1/api", public=True)
    assert gate()(parse_head(request()), public, "203.0.113.9") is None


@pytest.mark.parametrize(
    ("ip", "ranges", "allowed"),
    [
        ("10.1.2.3", (), True),
        ("10.1.2.3", ("10.0.0.0/8",), True),
        ("11.1.2.3", ("10.0.0.0/8", "192.168.1.7"), False),
        ("192.168.1.7", ("10.0.0.0/8", "192.168.1.7"), True),
        ("::1", ("127.0.0.0/8",), False),
        ("::1", ("::1/128",), True),
        ("", ("10.0.0.0/8",), False),
    ],
)
def test_client_ranges(ip: str, ranges: tuple[str, ...], allowed: bool) -> None:
    assert client_allowed(ip, ranges) is allowed


def test_a_public_app_limited_to_client_ranges_refuses_others() -> None:
    limited = Route("127.0.0.1", 80, name="s1/api", public=True, allowed_client_ips=("10.0.0.0/8",))
    assert gate()(parse_head(request()), limited, "10.9.9.9") is None
    answer = gate()(parse_head(request()), limited, "172.16.0.1")
    assert status(answer) == 403
    assert answer is not None
    assert b"the address 172.16.0.1 may not reach the app" in answer


def test_a_token_opens_its_app_once() -> None:
    g = gate()
    value = token()
    assert status(g(parse_head(request(f"/?backendai_token={value}")), APP, "127.0.0.1")) == 302
    again = g(parse_head(request(f"/?backendai_token={value}")), APP, "127.0.0.1")
    assert status(again) == 403
    assert again is not None
    assert b"was used already" in again


def test_a_token_spent_in_one_process_is_refused_in_another(tmp_path: Path) -> None:
    # Two gates over one directory: as the app proxy's worker processes share theirs.
    first, second = (
        AuthGate(SECRET, cookie_ttl=3600, spent=SpentTokens(tmp_path / "spent"), clock=lambda: NOW)
        for _ in range(2)
    )
    head = parse_head(request(f"/?backendai_token={token()}"))
    assert status(first(head, APP, "10.0.0.1")) == 302
    refused = second(head, APP, "10.0.0.1")
    assert status(refused) == 403
    assert refused is not None
    assert b"was used already" in refused
    assert status(first(head, APP, "10.0.0.1")) == 403


def test_spent_tokens_are_forgotten_once_expired(tmp_path: Path) -> None:
    spent = SpentTokens(tmp_path / "spent")
    assert spent.spend("a", NOW + 10, NOW)
    assert not spent.spend("a", NOW + 10, NOW)
    assert spent.spend("b", NOW + 100, NOW)
    spent.sweep(NOW + 50)
    assert len(list((tmp_path / "spent").iterdir())) == 1  # "a" expired, "b" kept
    assert not spent.spend("b", NOW + 100, NOW + 50)


def test_a_token_whose_use_cannot_be_recorded_is_refused(tmp_path: Path) -> None:
    spent_dir = tmp_path / "spent"
    spent = SpentTokens(spent_dir)
    spent_dir.rmdir()
    spent_dir.write_text("")  # as a broken disk would: nothing can be recorded there
    gate_ = AuthGate(SECRET, cookie_ttl=3600, spent=spent, clock=lambda: NOW)
    answer = gate_(parse_head(request(f"/?backendai_token={token()}")), APP, "10.0.0.1")
    assert status(answer) == 503
    assert answer is not None
    assert b"cannot record logins" in answer
