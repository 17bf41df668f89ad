"""The small HTML pages the proxy answers with itself (errors, redirects).  Pure."""

from __future__ import annotations

import html

__all__ = ["page", "redirect"]

REASONS = {
    302: "Found",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def page(status: int, text: str, *, keep_alive: bool = False, extra: str = "") -> bytes:
    """A complete HTTP/1.1 response with a short HTML page saying *text* (escaped)."""
    reason = REASONS.get(status, "Error")
    body = (
        f"<!doctype html><title>{status} {reason}</title><h1>{status} {reason}</h1>"
        f"<p>{html.escape(text, quote=False)}</p>\n"
    ).encode()
    connection = "keep-alive" if keep_alive else "close"
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/html; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\n{extra}"
        f"Connection: {connection}\r\n\r\n"
    ).encode() + body


def redirect(location: str, *, set_cookie: str) -> bytes:
    """A 302 to *location* that also sets a cookie."""
    extra = f"Location: {location}\r\nSet-Cookie: {set_cookie}\r\n"
    return page(302, f"continue at {location}", extra=extra)
