"""A buffered side of a proxied connection: read a head, forward a body, splice raw bytes."""

from __future__ import annotations

import contextlib

import trio

from .framing import ChunkedScanner, Framing
from .head import HeadError, find_head_end

__all__ = ["Side", "splice"]

CHUNK = 65536


class HeadTooLarge(HeadError):
    def __init__(self, limit: int) -> None:
        super().__init__(431, f"the request head exceeds {limit} bytes")


class Side:
    """One stream and the bytes read from it but not yet passed on."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.buf = bytearray()
        self.eof = False

    async def fill(self) -> bool:
        """Read more into the buffer; False at end of stream."""
        if self.eof:
            return False
        data = await self.stream.receive_some(CHUNK)
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    async def read_head(self, limit: int) -> bytes | None:
        """The next head (through its blank line), or None when the stream ends before one."""
        while (end := find_head_end(self.buf)) < 0:
            if len(self.buf) > limit:
                raise HeadTooLarge(limit)
            if not await self.fill():
                return None
        if end > limit:
            raise HeadTooLarge(limit)
        head = bytes(self.buf[:end])
        del self.buf[:end]
        return head

    async def forward(
        self, dst: trio.abc.Stream, framing: Framing, prefix: bytes, status: int
    ) -> bool:
        """Send *prefix* then one body to *dst*; False if this side ended before the body did.

        *status* is what a broken chunked encoding is answered with (400 from a
        client, 502 from an app).
        """
        if framing.kind == "length":
            left = framing.length
            while True:
                take = min(left, len(self.buf))
                out = prefix + self.buf[:take]
                del self.buf[:take]
                left -= take
                prefix = b""
                if out:
                    await dst.send_all(out)
                if left == 0:
                    return True
                if not await self.fill():
                    return False
        if framing.kind == "chunked":
            scanner = ChunkedScanner(status)
            while True:
                take = scanner.feed(self.buf)
                out = prefix + self.buf[:take]
                del self.buf[:take]
                prefix = b""
                if out:
                    await dst.send_all(out)
                if scanner.done:
                    return True
                if not await self.fill():
                    return False
        # Delimited by the end of the stream.
        out = prefix + self.buf
        self.buf.clear()
        if out:
            await dst.send_all(out)
        await _pump(self, dst)
        return True


async def _pump(src: Side, dst: trio.abc.Stream) -> None:
    if src.buf:
        buffered = bytes(src.buf)
        src.buf.clear()
        await dst.send_all(buffered)
    while not src.eof:
        data = await src.stream.receive_some(CHUNK)
        if not data:
            src.eof = True
            break
        await dst.send_all(data)
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        if isinstance(dst, trio.abc.HalfCloseableStream):
            await dst.send_eof()
        else:  # TLS cannot half-close: the end of one direction ends the connection
            await dst.aclose()


async def splice(a: Side, b: Side) -> None:
    """Copy bytes both ways (buffered ones first) until both directions have ended.

    A half-close in one direction is forwarded without cutting the other.
    """
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_pump, a, b.stream)
            nursery.start_soon(_pump, b, a.stream)
    except* (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
