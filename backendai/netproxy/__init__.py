"""The app proxy: our raw-socket HTTP/TCP proxy on Trio."""

from __future__ import annotations

from .head import HeadError, RequestHead, find_head_end, parse_head
from .proxy import Route, RouteTable, handle_connection, splice

__all__ = [
    "HeadError",
    "RequestHead",
    "Route",
    "RouteTable",
    "find_head_end",
    "handle_connection",
    "parse_head",
    "splice",
]
