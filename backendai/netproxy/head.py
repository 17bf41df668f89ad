"""HTTP/1.1 message heads, parsed only as far as routing, framing and auth need.  Pure."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "HeadError",
    "RequestHead",
    "ResponseHead",
    "find_head_end",
    "parse_head",
    "parse_response_head",
]


class HeadError(ValueError):
    """The head is malformed; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


_NO_TOKENS: frozenset[str] = frozenset()


class _Message:
    """What request and response heads share: headers, and whether the connection stays open.

    What every request needs is worked out once, when the head is made.
    """

    version: str
    headers: tuple[tuple[str, str], ...]
    # Lower-cased header name -> the value of its first occurrence.
    names: dict[str, str]
    keep_alive: bool

    def __post_init__(self) -> None:
        names = {k.lower(): v for k, v in reversed(self.headers)}
        object.__setattr__(self, "names", names)
        conn = self.tokens("connection") if "connection" in names else _NO_TOKENS
        keep = "keep-alive" in conn if self.version == "HTTP/1.0" else "close" not in conn
        object.__setattr__(self, "keep_alive", keep)

    def header(self, name: str) -> str | None:
        return self.names.get(name.lower())

    def tokens(self, name: str) -> set[str]:
        """The comma-separated tokens of every *name* header, lower-cased."""
        lname = name.lower()
        if lname not in self.names:
            return set()
        return {
            t.strip().lower()
            for k, v in self.headers
            if k.lower() == lname
            for t in v.split(",")
            if t.strip()
        }


def _host(value: str | None) -> str:
    raw = (value or "").strip().lower()
    if raw.startswith("["):
        return raw[: raw.find("]") + 1]
    return raw.rsplit(":", 1)[0] if ":" in raw else raw


@dataclass(frozen=True)
class RequestHead(_Message):
    method: str
    target: str
    version: str
    headers: tuple[tuple[str, str], ...]
    # The Host header without the port, lower-cased ('' when absent).
    host: str = field(init=False, compare=False, repr=False)
    # A protocol switch (websocket) or a tunnel: after it, bytes flow raw both ways.
    is_upgrade: bool = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "host", _host(self.names.get("host")))
        upgrade = self.method == "CONNECT" or (
            "upgrade" in self.names and "upgrade" in self.tokens("connection")
        )
        object.__setattr__(self, "is_upgrade", upgrade)


@dataclass(frozen=True)
class ResponseHead(_Message):
    version: str
    status: int
    headers: tuple[tuple[str, str], ...]


def find_head_end(buf: bytes | bytearray) -> int:
    """Index just past the blank line ending the head, or -1 when incomplete."""
    i = buf.find(b"\r\n\r\n")
    return -1 if i < 0 else i + 4


def _header_lines(lines: list[str]) -> tuple[tuple[str, str], ...]:
    headers = []
    for line in lines:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise HeadError(400, f"malformed header line {line[:100]!r}")
        headers.append((name, value.strip()))
    return tuple(headers)


def parse_head(raw: bytes) -> RequestHead:
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[0].isalpha() or not parts[2].startswith("HTTP/1."):
        raise HeadError(400, f"malformed request line {lines[0][:100]!r}")
    head = RequestHead(parts[0], parts[1], parts[2], _header_lines(lines[1:]))
    repeated = len(head.names) < len(head.headers)  # some name occurs twice (rare)
    if repeated and sum(1 for k, _ in head.headers if k.lower() == "host") > 1:
        raise HeadError(400, "more than one Host header")
    return head


def parse_response_head(raw: bytes) -> ResponseHead:
    """Parse an app's response head; a malformed one is the app's fault (502)."""
    lines = raw.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or len(code) != 3 or not code.isdigit():
        raise HeadError(502, f"the app sent a malformed status line {lines[0][:100]!r}")
    try:
        headers = _header_lines(lines[1:])
    except HeadError as e:
        raise HeadError(502, f"the app sent a {e}") from None
    return ResponseHead(version, int(code), headers)
