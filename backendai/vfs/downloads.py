"""Downloads: a file with ``Range`` support, or a directory as a zip streamed while it is made.

The zip is written by a worker thread into a channel (stored entries, zip64,
data descriptors: no seeking, no temporary file), so the first bytes leave
before the last file is read.
"""

from __future__ import annotations

import logging
import os
import stat as statmod
import time
import zipfile
from collections.abc import Awaitable, Callable, MutableMapping
from email.utils import formatdate
from pathlib import Path
from typing import IO, Any, cast
from urllib.parse import quote

import trio

from ..errors import InvalidAPIParameters, NotFound
from .backend import VolumeBackend
from .paths import relative_path, resolve_inside
from .tokens import TransferClaims

__all__ = ["parse_range", "serve_download"]

log = logging.getLogger(__name__)

Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Thread = Callable[..., Awaitable[Any]]
_CHUNK = 4 * 1024 * 1024


class RangeNotSatisfiable(Exception):
    pass


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive byte range ``Range: bytes=`` asks of a *size*-byte file; None: all of it.

    One range only (several: the whole file, as RFC 9110 allows).  A range
    starting past the end raises RangeNotSatisfiable.
    """
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    first, sep, last = header[len("bytes=") :].strip().partition("-")
    if not sep or not (first.isdigit() or last.isdigit()):
        return None
    if not first:  # suffix: the last N bytes
        n = int(last)
        if n == 0:
            raise RangeNotSatisfiable
        return max(0, size - n), size - 1
    start = int(first)
    if last and not last.isdigit():
        return None
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or (last and int(last) < start):
        raise RangeNotSatisfiable
    return start, end


def _disposition(name: str) -> bytes:
    return f"attachment; filename*=UTF-8''{quote(name)}".encode()


def _header(scope: MutableMapping[str, Any], name: bytes) -> str | None:
    for k, v in scope["headers"]:
        if k.lower() == name:
            return bytes(v).decode("latin-1")
    return None


async def serve_download(
    backend: VolumeBackend,
    claims: TransferClaims,
    scope: MutableMapping[str, Any],
    send: Send,
    *,
    thread: Thread,
) -> None:
    root = backend.mount_path(claims.folder)
    rel = relative_path(claims.path)
    path: Path = await thread(resolve_inside, root, rel)
    try:
        st = await thread(os.stat, path)
    except FileNotFoundError:
        raise NotFound(f"path {claims.path!r} not found in the folder") from None
    name = rel.name or claims.folder
    if statmod.S_ISDIR(st.st_mode):
        await _send_zip(root, path, name, send, thread=thread)
    elif statmod.S_ISREG(st.st_mode):
        if claims.archive:
            raise InvalidAPIParameters(f"path {claims.path!r} is a file; archive needs a directory")
        await _send_file(path, name, st, scope, send, thread=thread)
    else:
        raise InvalidAPIParameters(f"path {claims.path!r} is neither a file nor a directory")


async def _send_file(
    path: Path,
    name: str,
    st: os.stat_result,
    scope: MutableMapping[str, Any],
    send: Send,
    *,
    thread: Thread,
) -> None:
    size = st.st_size
    modified = formatdate(st.st_mtime, usegmt=True)
    headers = [
        (b"accept-ranges", b"bytes"),
        (b"content-type", b"application/octet-stream"),
        (b"content-disposition", _disposition(name)),
        (b"last-modified", modified.encode()),
    ]
    # If-Range: resume only if the file is the one the client began with; else send it all.
    if_range = _header(scope, b"if-range")
    range_header = _header(scope, b"range") if if_range in (None, modified) else None
    try:
        wanted = parse_range(range_header, size)
    except RangeNotSatisfiable:
        await send(
            {
                "type": "http.response.start",
                "status": 416,
                "headers": [(b"content-range", b"bytes */%d" % size), (b"content-length", b"0")],
            }
        )
        await send({"type": "http.response.body", "body": b""})
        return
    start, end = wanted if wanted is not None else (0, size - 1)
    status = 200
    if wanted is not None:
        status = 206
        headers.append((b"content-range", b"bytes %d-%d/%d" % (start, end, size)))
    length = end - start + 1
    headers.append((b"content-length", b"%d" % length))
    fd: int = await thread(os.open, path, os.O_RDONLY)
    try:
        await send({"type": "http.response.start", "status": status, "headers": headers})
        if scope["method"] == "HEAD":
            await send({"type": "http.response.body", "body": b""})
            return
        if "http.response.zerocopysend" in scope.get("extensions", {}):
            # The server copies file to socket in the kernel (sendfile).
            with os.fdopen(os.dup(fd), "rb") as f:
                await send(
                    {
                        "type": "http.response.zerocopysend",
                        "file": f,
                        "offset": start,
                        "count": length,
                        "more_body": False,
                    }
                )
            return
        pos = start
        while pos <= end:
            data: bytes = await thread(os.pread, fd, min(_CHUNK, end + 1 - pos), pos)
            if not data:
                break  # the file shrank under us; the client sees a short body
            pos += len(data)
            await send({"type": "http.response.body", "body": data, "more_body": pos <= end})
        if pos <= end:
            await send({"type": "http.response.body", "body": b""})
    finally:
        os.close(fd)


class _ChannelWriter:
    """A write-only file object for zipfile that hands 1 MiB pieces to the event loop."""

    def __init__(self, channel: trio.MemorySendChannel[bytes]) -> None:
        self._channel = channel
        self._buf = bytearray()

    def write(self, data: bytes) -> int:
        self._buf += data
        if len(self._buf) >= _CHUNK:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self._buf:
            piece, self._buf = bytes(self._buf), bytearray()
            trio.from_thread.run(self._channel.send, piece)


def _write_zip(root: Path, top: Path, out: _ChannelWriter) -> None:
    """Write every file and empty directory under *top* into a zip on *out*.  Blocking."""
    with zipfile.ZipFile(
        cast("IO[bytes]", out), "w", compression=zipfile.ZIP_STORED, allowZip64=True
    ) as zf:
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames.sort()
            rel_dir = os.path.relpath(dirpath, top)
            if not dirnames and not filenames and rel_dir != ".":
                zf.writestr(zipfile.ZipInfo(rel_dir + "/"), b"")
            for fname in sorted(filenames):
                full = os.path.join(dirpath, fname)
                arc = os.path.normpath(os.path.join(rel_dir, fname))
                try:
                    real = resolve_inside(root, relative_path(os.path.relpath(full, root)))
                    st = os.stat(real)
                except (InvalidAPIParameters, FileNotFoundError):
                    log.info("zip of %s: skipping %s (gone, or a link leading out)", top, arc)
                    continue
                if not statmod.S_ISREG(st.st_mode):
                    continue
                info = zipfile.ZipInfo(arc, time.localtime(max(st.st_mtime, 315532800))[:6])
                info.external_attr = (st.st_mode & 0xFFFF) << 16
                with open(real, "rb") as src, zf.open(info, "w", force_zip64=True) as dst:
                    while piece := src.read(_CHUNK):
                        dst.write(piece)
    out.flush()


async def _send_zip(root: Path, top: Path, name: str, send: Send, *, thread: Thread) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/zip"),
                (b"content-disposition", _disposition(f"{name}.zip")),
            ],
        }
    )
    send_chan, recv_chan = trio.open_memory_channel[bytes](2)

    async def produce() -> None:
        async with send_chan:
            await thread(_write_zip, root, top, _ChannelWriter(send_chan))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(produce)
        async with recv_chan:
            async for piece in recv_chan:
                await send({"type": "http.response.body", "body": piece, "more_body": True})
    await send({"type": "http.response.body", "body": b""})
