"""The app proxy: our raw-socket HTTP/TCP proxy on Trio."""

from __future__ import annotations

from .framing import ChunkedScanner, Framing, request_framing, response_framing
from .head import (
    HeadError,
    RequestHead,
    ResponseHead,
    find_head_end,
    parse_head,
    parse_response_head,
)
from .pages import page, redirect
from .proxy import client_ip, handle_connection, handle_tcp
from .routes import Gate, ProxySettings, Route, Router, RouteTable
from .upstreams import ConnectionLimiter
from .wire import Side, splice

__all__ = [
    "ChunkedScanner",
    "ConnectionLimiter",
    "Framing",
    "Gate",
    "HeadError",
    "ProxySettings",
    "RequestHead",
    "ResponseHead",
    "Route",
    "RouteTable",
    "Router",
    "Side",
    "client_ip",
    "find_head_end",
    "handle_connection",
    "handle_tcp",
    "page",
    "parse_head",
    "parse_response_head",
    "redirect",
    "request_framing",
    "response_framing",
    "splice",
]
