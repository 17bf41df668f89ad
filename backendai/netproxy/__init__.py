"""The app proxy: our raw-socket HTTP/TCP proxy on Trio, its route table and API, and app auth."""

from __future__ import annotations

from .announce import announce_forever, announce_once
from .feed import RouteFeed, follow_feed
from .framing import ChunkedScanner, Framing, request_framing, response_framing
from .gate import TOKEN_PARAM, AuthGate, client_allowed, client_ranges
from .head import (
    HeadError,
    RequestHead,
    ResponseHead,
    find_head_end,
    parse_head,
    parse_response_head,
)
from .listen import bound_port, open_listeners, tls_context
from .pages import page, redirect
from .proxy import client_ip, handle_connection, handle_tcp
from .registry import AppRoute, Placement, PortRouter, RouteRegistry, wildcard_name
from .route_api import RouteAPI, app_route_from_json, app_route_to_json
from .routes import Gate, ProxySettings, Route, Router, RouteTable
from .server import ProxyServer
from .spent import SpentTokens
from .tokens import (
    Claims,
    TokenError,
    cookie_name,
    forward_key,
    forward_preamble,
    sign,
    verify,
)
from .upstreams import ConnectionLimiter, open_app_stream
from .wire import Side, splice
from .worker import worker_environment

__all__ = [
    "TOKEN_PARAM",
    "AppRoute",
    "AuthGate",
    "ChunkedScanner",
    "Claims",
    "ConnectionLimiter",
    "Framing",
    "Gate",
    "HeadError",
    "Placement",
    "PortRouter",
    "ProxyServer",
    "ProxySettings",
    "RequestHead",
    "ResponseHead",
    "Route",
    "RouteAPI",
    "RouteFeed",
    "RouteRegistry",
    "RouteTable",
    "Router",
    "Side",
    "SpentTokens",
    "TokenError",
    "announce_forever",
    "announce_once",
    "app_route_from_json",
    "app_route_to_json",
    "bound_port",
    "client_allowed",
    "client_ip",
    "client_ranges",
    "cookie_name",
    "find_head_end",
    "follow_feed",
    "forward_key",
    "forward_preamble",
    "handle_connection",
    "handle_tcp",
    "open_app_stream",
    "open_listeners",
    "page",
    "parse_head",
    "parse_response_head",
    "redirect",
    "request_framing",
    "response_framing",
    "sign",
    "splice",
    "tls_context",
    "verify",
    "wildcard_name",
    "worker_environment",
]
