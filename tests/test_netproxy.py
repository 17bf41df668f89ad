"""The app proxy's pure parts (backendai.netproxy): heads and body framing, table-driven."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from backendai.netproxy import (
    ChunkedScanner,
    Framing,
    HeadError,
    RequestHead,
    find_head_end,
    parse_head,
    parse_response_head,
    request_framing,
    response_framing,
)

# -- head parsing (pure) ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "method", "target", "version", "headers"),
    [
        (
            b"GET / HTTP/1.1\r\nHost: app.example\r\n\r\n",
            "GET",
            "/",
            "HTTP/1.1",
            (("Host", "app.example"),),
        ),
        (
            b"POST /upload?x=1 HTTP/1.0\r\nHost: a\r\nContent-Length: 5\r\n\r\n",
            "POST",
            "/upload?x=1",
            "HTTP/1.0",
            (("Host", "a"), ("Content-Length", "5")),
        ),
        # Values are trimmed; a colon in the value stays in the value; empty values are kept.
        (
            b"GET /ws HTTP/1.1\r\nHost:   a:80  \r\nUpgrade:websocket\r\nX-Empty:\r\n\r\n",
            "GET",
            "/ws",
            "HTTP/1.1",
            (("Host", "a:80"), ("Upgrade", "websocket"), ("X-Empty", "")),
        ),
        (b"OPTIONS * HTTP/1.1\r\n\r\n", "OPTIONS", "*", "HTTP/1.1", ()),
        (
            b"CONNECT app.example:443 HTTP/1.1\r\n\r\n",
            "CONNECT",
            "app.example:443",
            "HTTP/1.1",
            (),
        ),
        # Without the final blank line (as find_head_end's slice may be passed on).
        (b"GET / HTTP/1.1\r\nA: b", "GET", "/", "HTTP/1.1", (("A", "b"),)),
        # Bytes beyond ASCII survive as latin-1.
        (b"GET /\xe9 HTTP/1.1\r\nX: \xff\r\n\r\n", "GET", "/\xe9", "HTTP/1.1", (("X", "\xff"),)),
    ],
)
def test_parse_good_heads(
    raw: bytes, method: str, target: str, version: str, headers: tuple[tuple[str, str], ...]
) -> None:
    assert parse_head(raw) == RequestHead(method, target, version, headers)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"GET /\r\n\r\n", "malformed request line 'GET /'"),
        (b"GET  / HTTP/1.1\r\n\r\n", "malformed request line 'GET  / HTTP/1.1'"),
        (b"GET / HTTP/1.1 extra\r\n\r\n", "malformed request line"),
        (b"G3T / HTTP/1.1\r\n\r\n", "malformed request line 'G3T / HTTP/1.1'"),
        (b"GET / HTTP/2.0\r\n\r\n", "malformed request line 'GET / HTTP/2.0'"),
        (b"GET / FTP/1.0\r\n\r\n", "malformed request line"),
        (b"\r\n\r\n", "malformed request line ''"),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", "malformed request line"),
        (b"GET / HTTP/1.1\r\nNoColon\r\n\r\n", "malformed header line 'NoColon'"),
        (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", "malformed header line 'Host : a'"),
        (b"GET / HTTP/1.1\r\n Folded: a\r\n\r\n", "malformed header line ' Folded: a'"),
        (b"GET / HTTP/1.1\r\n: novalue\r\n\r\n", "malformed header line ': novalue'"),
        (b"GET / HTTP/1.1\r\nA: b\r\n\tcontinued\r\n\r\n", "malformed header line '\\tcontinued'"),
    ],
)
def test_parse_malformed_heads(raw: bytes, message: str) -> None:
    assert_refused(parse_head, raw, 400, message)


def assert_refused(parse: Callable[[bytes], object], raw: bytes, status: int, message: str) -> None:
    with pytest.raises(HeadError) as info:
        parse(raw)
    assert info.value.status == status
    assert message in str(info.value)


def test_malformed_line_is_cut_in_the_message() -> None:
    with pytest.raises(HeadError) as info:
        parse_head(b"X" * 10_000 + b"\r\n\r\n")
    assert len(str(info.value)) < 200


@pytest.mark.parametrize(
    ("host_header", "host"),
    [
        ("app.example", "app.example"),
        ("App.Example", "app.example"),
        ("app.example:8080", "app.example"),
        ("app.example:", "app.example"),
        ("127.0.0.1:10200", "127.0.0.1"),
        ("[::1]", "[::1]"),
        ("[::1]:8080", "[::1]"),
        ("[2001:DB8::1]:443", "[2001:db8::1]"),
        ("  spaced.example  ", "spaced.example"),
        ("", ""),
        (None, ""),
    ],
)
def test_host_without_port(host_header: str | None, host: str) -> None:
    raw = b"GET / HTTP/1.1\r\n"
    if host_header is not None:
        raw += f"Host: {host_header}\r\n".encode()
    assert parse_head(raw + b"\r\n").host == host


def test_header_lookup_is_case_insensitive_and_first_wins() -> None:
    head = parse_head(b"GET / HTTP/1.1\r\nx-a: 1\r\nX-A: 2\r\n\r\n")
    assert head.header("X-A") == "1"
    assert head.header("x-a") == "1"
    assert head.header("missing") is None


@pytest.mark.parametrize(
    ("buf", "end"),
    [
        (b"", -1),
        (b"GET / HTTP/1.1\r\n", -1),
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r", -1),
        (b"GET / HTTP/1.1\r\n\r\n", 18),
        (b"GET / HTTP/1.1\r\n\r\nbody\r\n\r\n", 18),
        (bytearray(b"GET / HTTP/1.1\r\nA: b\r\n\r\nxyz"), 24),
        # Bare LF is not a head end: we wait for CRLF CRLF.
        (b"GET / HTTP/1.1\n\n", -1),
    ],
)
def test_find_head_end(buf: bytes | bytearray, end: int) -> None:
    assert find_head_end(buf) == end


# -- connection semantics -------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "keep_alive", "upgrade"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", True, False),
        (b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", False, False),
        (b"GET / HTTP/1.1\r\nConnection: Keep-Alive, Close\r\n\r\n", False, False),
        (b"GET / HTTP/1.0\r\n\r\n", False, False),
        (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", True, False),
        (b"GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", True, True),
        (b"GET / HTTP/1.1\r\nConnection: keep-alive, upgrade\r\nUpgrade: h2c\r\n\r\n", True, True),
        # An Upgrade header without the Connection token is not a switch.
        (b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n", True, False),
        (b"CONNECT a:1 HTTP/1.1\r\n\r\n", True, True),
    ],
)
def test_keep_alive_and_upgrade(raw: bytes, keep_alive: bool, upgrade: bool) -> None:
    head = parse_head(raw)
    assert head.keep_alive is keep_alive
    assert head.is_upgrade is upgrade


@pytest.mark.parametrize(
    ("raw", "status", "keep_alive"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 200, True),
        (b"HTTP/1.1 404\r\n\r\n", 404, True),
        (b"HTTP/1.0 200 OK\r\n\r\n", 200, False),
        (b"HTTP/1.1 101 Switching Protocols\r\nConnection: close\r\n\r\n", 101, False),
    ],
)
def test_parse_response_heads(raw: bytes, status: int, keep_alive: bool) -> None:
    head = parse_response_head(raw)
    assert head.status == status
    assert head.keep_alive is keep_alive


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"HTTP/1.1 OK\r\n\r\n", "malformed status line 'HTTP/1.1 OK'"),
        (b"SSH-2.0-OpenSSH\r\n\r\n", "malformed status line"),
        (b"HTTP/1.1 200 OK\r\nbroken\r\n\r\n", "malformed header line 'broken'"),
    ],
)
def test_malformed_response_heads_are_the_apps_fault(raw: bytes, message: str) -> None:
    assert_refused(parse_response_head, raw, 502, message)


# -- body framing ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "framing"),
    [
        ("", Framing("length", 0)),
        ("Content-Length: 12\r\n", Framing("length", 12)),
        ("Content-Length: 12, 12\r\n", Framing("length", 12)),
        ("Transfer-Encoding: chunked\r\n", Framing("chunked")),
        ("Transfer-Encoding: gzip, Chunked\r\n", Framing("chunked")),
    ],
)
def test_request_framing(headers: str, framing: Framing) -> None:
    assert request_framing(parse_head(f"POST / HTTP/1.1\r\n{headers}\r\n".encode())) == framing


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ("Content-Length: -1\r\n", "request Content-Length '-1' is not a byte count"),
        ("Content-Length: 1, 2\r\n", "request Content-Length '1, 2' is not a byte count"),
        ("Content-Length: 0x10\r\n", "is not a byte count"),
        (
            "Transfer-Encoding: gzip\r\n",
            "request Transfer-Encoding 'gzip' does not end in 'chunked'",
        ),
        (
            "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
            "both Transfer-Encoding and Content-Length",
        ),
    ],
)
def test_request_framing_refuses_ambiguity(headers: str, message: str) -> None:
    with pytest.raises(HeadError) as info:
        request_framing(parse_head(f"POST / HTTP/1.1\r\n{headers}\r\n".encode()))
    assert info.value.status == 400
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("method", "raw", "framing"),
    [
        ("GET", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", Framing("length", 5)),
        ("HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", Framing("length", 0)),
        ("GET", b"HTTP/1.1 204 No Content\r\n\r\n", Framing("length", 0)),
        ("GET", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", Framing("length", 0)),
        ("GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", Framing("chunked")),
        ("GET", b"HTTP/1.1 200 OK\r\n\r\n", Framing("close")),
    ],
)
def test_response_framing(method: str, raw: bytes, framing: Framing) -> None:
    assert response_framing(method, parse_response_head(raw)) == framing


CHUNKED = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: x\r\n\r\n"


@pytest.mark.parametrize("piece", [1, 2, 3, 7, len(CHUNKED)])
def test_chunked_scanner_finds_the_end_however_the_bytes_arrive(piece: int) -> None:
    scanner = ChunkedScanner(400)
    data = CHUNKED + b"GET /next HTTP/1.1\r\n"
    consumed = 0
    while not scanner.done:
        chunk = data[consumed : consumed + piece]
        assert chunk, "ran past the end of the body"
        consumed += scanner.feed(chunk)
    assert consumed == len(CHUNKED)


def test_chunked_scanner_without_trailers() -> None:
    scanner = ChunkedScanner(400)
    assert scanner.feed(b"3\r\nabc\r\n0\r\n\r\nrest") == 13
    assert scanner.done


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"zz\r\n", "malformed chunk size 'zz'"),
        (b"-5\r\n", "malformed chunk size '-5'"),
        (b"\r\n", "malformed chunk size ''"),
        (b"3\r\nabcXY", "a chunk is not followed by CRLF"),
        (b"1" * 5000, "a chunk size line is too long"),
    ],
)
def test_chunked_scanner_refuses_broken_encodings(data: bytes, message: str) -> None:
    with pytest.raises(HeadError) as info:
        ChunkedScanner(502).feed(data)
    assert info.value.status == 502
    assert message in str(info.value)
