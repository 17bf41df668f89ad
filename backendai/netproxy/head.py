"""HTTP/1.1 request-head parsing, only as far as routing needs.  Pure: bytes in, facts out."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["HeadError", "RequestHead", "find_head_end", "parse_head"]


class HeadError(ValueError):
    """The request head is malformed; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class RequestHead:
    method: str
    target: str
    version: str
    headers: tuple[tuple[str, str], ...]

    def header(self, name: str) -> str | None:
        lname = name.lower()
        return next((v for k, v in self.headers if k.lower() == lname), None)

    @property
    def host(self) -> str:
        """The Host header without the port, lower-cased ('' when absent)."""
        raw = (self.header("host") or "").strip().lower()
        if raw.startswith("["):
            return raw[: raw.find("]") + 1]
        return raw.rsplit(":", 1)[0] if ":" in raw else raw


def find_head_end(buf: bytes | bytearray) -> int:
    """Index just past the blank line ending the head, or -1 when incomplete."""
    i = buf.find(b"\r\n\r\n")
    return -1 if i < 0 else i + 4


def parse_head(raw: bytes) -> RequestHead:
    try:
        text = raw.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes everything
        raise HeadError(400, "request head is not text") from None
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[0].isalpha() or not parts[2].startswith("HTTP/1."):
        raise HeadError(400, f"malformed request line {lines[0][:100]!r}")
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise HeadError(400, f"malformed header line {line[:100]!r}")
        headers.append((name, value.strip()))
    if sum(1 for k, _ in headers if k.lower() == "host") > 1:
        raise HeadError(400, "more than one Host header")
    return RequestHead(parts[0], parts[1], parts[2], tuple(headers))
