"""Where an HTTP/1.1 body ends: by length, by chunks, or by the connection closing.  Pure.

The proxy never decodes a body; it only needs to know how many of the bytes
that follow a head belong to the same message, so that the next request on a
kept-alive connection can be routed on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .head import HeadError, RequestHead, ResponseHead

__all__ = ["ChunkedScanner", "Framing", "request_framing", "response_framing"]

_MAX_CHUNK_LINE = 4096


@dataclass(frozen=True)
class Framing:
    kind: Literal["length", "chunked", "close"]
    length: int = 0


NO_BODY = Framing("length", 0)


def _length(value: str | None, who: str, status: int) -> int | None:
    if value is None:
        return None
    values = {v.strip() for v in value.split(",")}
    if len(values) != 1 or not (v := values.pop()).isdigit():
        raise HeadError(status, f"{who} Content-Length {value[:40]!r} is not a byte count")
    return int(v)


def _chunked(te: str | None, who: str, status: int) -> bool:
    if te is None:
        return False
    codings = [t.strip().lower() for t in te.split(",")]
    if codings[-1] != "chunked":
        raise HeadError(status, f"{who} Transfer-Encoding {te[:40]!r} does not end in 'chunked'")
    return True


def request_framing(head: RequestHead) -> Framing:
    te = head.header("transfer-encoding")
    cl = head.header("content-length")
    if te is not None and cl is not None:
        # Both at once is how requests are smuggled past a proxy: refuse.
        raise HeadError(400, "a request with both Transfer-Encoding and Content-Length")
    if _chunked(te, "request", 400):
        return Framing("chunked")
    length = _length(cl, "request", 400)
    return NO_BODY if length is None else Framing("length", length)


def response_framing(method: str, head: ResponseHead) -> Framing:
    if method == "HEAD" or head.status in (204, 304) or 100 <= head.status < 200:
        return NO_BODY
    if _chunked(head.header("transfer-encoding"), "the app's", 502):
        return Framing("chunked")
    length = _length(head.header("content-length"), "the app's", 502)
    return Framing("close") if length is None else Framing("length", length)


class ChunkedScanner:
    """Follows a chunked body through the bytes fed to it, and says where it ends."""

    def __init__(self, status: int) -> None:
        self._status = status  # what to answer when the encoding is broken
        self._state: Literal["size", "data", "data-crlf", "trailer"] = "size"
        self._line = bytearray()
        self._left = 0
        self.done = False

    def feed(self, data: bytes | bytearray | memoryview) -> int:
        """Consume bytes of *data*; return how many belong to the body (all, unless it ended)."""
        view = memoryview(data)
        i = 0
        while i < len(view) and not self.done:
            if self._state == "data":
                step = min(self._left, len(view) - i)
                i += step
                self._left -= step
                if self._left == 0:
                    self._state = "data-crlf"
                    self._left = 2
            elif self._state == "data-crlf":
                step = min(self._left, len(view) - i)
                if bytes(view[i : i + step]) != b"\r\n"[2 - self._left :][:step]:
                    raise HeadError(self._status, "a chunk is not followed by CRLF")
                i += step
                self._left -= step
                if self._left == 0:
                    self._state = "size"
            else:
                i = self._line_step(view, i)
        return i

    def _line_step(self, view: memoryview, i: int) -> int:
        nl = bytes(view[i:]).find(b"\n")
        if nl < 0:
            self._line += view[i:]
            if len(self._line) > _MAX_CHUNK_LINE:
                raise HeadError(self._status, "a chunk size line is too long")
            return len(view)
        self._line += view[i : i + nl + 1]
        line = bytes(self._line).rstrip(b"\r\n")
        self._line.clear()
        if self._state == "trailer":
            if not line:
                self.done = True
        else:
            size = line.split(b";", 1)[0].strip()
            if not size or size.strip(b"0123456789abcdefABCDEF") or len(size) > 16:
                raise HeadError(
                    self._status, f"malformed chunk size {size[:20].decode('latin-1')!r}"
                )
            self._left = int(size, 16)
            self._state = "trailer" if self._left == 0 else "data"
        return i + nl + 1
