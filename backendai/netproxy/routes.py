"""What the proxy routes to, and how it decides: routes, settings, routers.  Pure."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from .head import RequestHead

__all__ = ["Gate", "ProxySettings", "Route", "RouteTable", "Router"]


@dataclass(frozen=True)
class Route:
    """Where an app listens, and who may reach it."""

    host: str
    port: int
    name: str = ""
    protocol: Literal["http", "tcp"] = "http"
    # The user (uuid) an ``authenticated`` app belongs to; public apps need no login.
    owner: str = ""
    public: bool = False
    # CIDR ranges a client must come from; empty: anywhere.
    allowed_client_ips: tuple[str, ...] = ()
    # An agent's forward to an app in a kernel: connections open with the forward preamble.
    forwarded: bool = False


@dataclass(frozen=True)
class ProxySettings:
    max_header_bytes: int = 16384
    header_timeout: float = 10.0
    keepalive_timeout: float = 75.0
    connect_timeout: float = 5.0
    max_connections_per_route: int = 1000
    scheme: Literal["http", "https"] = "http"
    # The key connections to forwarded apps are opened with (tokens.forward_key).
    forward_key: str = ""


class Router(Protocol):
    def route_for(self, head: RequestHead) -> Route | None: ...

    def unknown(self, head: RequestHead) -> str:
        """The 404 page's text for a request that has no route."""
        ...


# Decides whether a routed request may pass: None lets it through, bytes are the
# complete response to send instead (a refusal, or a redirect that sets a cookie).
Gate = Callable[[RequestHead, Route, str], bytes | None]


@dataclass
class RouteTable:
    """Host name -> where its app listens (wildcard mode; tests)."""

    by_host: dict[str, Route] = field(default_factory=dict)

    def lookup(self, host: str) -> Route | None:
        return self.by_host.get(host)

    def route_for(self, head: RequestHead) -> Route | None:
        return self.by_host.get(head.host)

    def unknown(self, head: RequestHead) -> str:
        return f"no app is served at host {head.host!r}"
