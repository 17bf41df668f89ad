"""Who may pass to an app: client address ranges, then the owner's cookie or token.

A ``public`` app is open to anyone its ``allowed_client_ips`` admit.  An
``authenticated`` app admits only its owner: the manager hands the owner a
short-lived token (``start-service``); the first request that carries it as
``?backendai_token=`` gets a cookie for that app alone and a redirect to the
same address without the token; the token is spent then.  Refusals are pages (401/403) that say why.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable
from urllib.parse import parse_qsl, urlencode

from ..errors import InvalidAPIParameters
from .head import RequestHead
from .pages import page, redirect
from .routes import Route
from .spent import SpentTokens
from .tokens import Claims, TokenError, cookie_name, sign, verify

__all__ = ["TOKEN_PARAM", "AuthGate", "client_allowed", "client_ranges"]

log = logging.getLogger(__name__)
TOKEN_PARAM = "backendai_token"


def client_ranges(raw: object, what: str) -> tuple[str, ...]:
    """*raw* checked as a list of addresses or CIDR ranges; *what* names it in the error."""
    if not isinstance(raw, list):
        raise InvalidAPIParameters(f"{what}: invalid value {raw!r}; expected a list")
    for r in raw:
        try:
            ipaddress.ip_network(r, strict=False)
        except (TypeError, ValueError):
            raise InvalidAPIParameters(
                f"{what}: invalid value {r!r}; expected an address or CIDR range"
            ) from None
    return tuple(str(r) for r in raw)


def client_allowed(ip: str, ranges: tuple[str, ...]) -> bool:
    if not ranges:
        return True
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(addr in ipaddress.ip_network(r, strict=False) for r in ranges)


def _cookies(head: RequestHead) -> dict[str, str]:
    found: dict[str, str] = {}
    for k, v in head.headers:
        if k.lower() == "cookie":
            for part in v.split(";"):
                name, sep, value = part.strip().partition("=")
                if sep:
                    found.setdefault(name, value)
    return found


def _split_token(target: str) -> tuple[str | None, str]:
    """The token in *target*'s query, and *target* without it."""
    path, sep, query = target.partition("?")
    if not sep or TOKEN_PARAM not in query:
        return None, target
    pairs = parse_qsl(query, keep_blank_values=True)
    token = next((v for k, v in pairs if k == TOKEN_PARAM), None)
    rest = urlencode([(k, v) for k, v in pairs if k != TOKEN_PARAM])
    return token, f"{path}?{rest}" if rest else path


class AuthGate:
    def __init__(
        self,
        secret: str,
        *,
        cookie_ttl: float,
        secure: bool = False,
        spent: SpentTokens | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secret = secret
        self._ttl = cookie_ttl
        self._secure = secure
        self._clock = clock
        # Tokens already exchanged (until they expire): a token opens its app once.
        self._spent = spent if spent is not None else SpentTokens()

    def __call__(self, head: RequestHead, route: Route, ip: str) -> bytes | None:
        what = repr(route.name)
        if not client_allowed(ip, route.allowed_client_ips):
            log.info(
                "refused %s for app %s: address not in %s", ip, route.name, route.allowed_client_ips
            )
            return page(403, f"the address {ip} may not reach the app {what}")
        if route.public:
            return None
        now = self._clock()
        name = cookie_name(route.name)
        cookie = _cookies(head).get(name)
        if cookie is not None:
            try:
                claims = verify(self._secret, cookie, kind="cookie", route=route.name, now=now)
            except TokenError as e:
                log.info("ignoring a cookie for app %s from %s: %s", route.name, ip, e)
            else:
                if claims.owner == route.owner:
                    return None
        token, rest = _split_token(head.target)
        if token is None:
            return page(401, f"the app {what} is open to its owner only: open it through the "
                        "session's start-service link (it carries a token)")  # fmt: skip
        try:
            claims = verify(self._secret, token, kind="token", route=route.name, now=now)
        except TokenError as e:
            log.info("refused a token for app %s from %s: %s", route.name, ip, e)
            return page(403, f"the token for the app {what} was refused: {e}")
        if claims.owner != route.owner:
            return page(403, f"the token for the app {what} belongs to another user")
        try:
            first_use = self._spent.spend(token, claims.exp, now)
        except OSError as e:  # cannot tell whether it was used: refuse, never open
            log.error("cannot record the use of a token for app %s: %s", route.name, e)
            return page(503, f"the proxy cannot record logins to the app {what} now: {e}")
        if not first_use:
            log.info("refused a spent token for app %s from %s", route.name, ip)
            return page(403, f"the token for the app {what} was used already; ask for a new link")
        value = sign(self._secret, Claims("cookie", route.name, claims.owner, now + self._ttl))
        attrs = f"Path=/; Max-Age={int(self._ttl)}; HttpOnly; SameSite=Lax"
        if self._secure:
            attrs += "; Secure"
        return redirect(rest, set_cookie=f"{name}={value}; {attrs}")
