"""A buffered side of a proxied connection: read a head, forward a body, splice raw bytes.

On a plain TCP stream a side reads and writes the socket itself: a read or
write that the kernel can do at once is done without a trip through Trio's
scheduler (two per request and direction, most of the proxy's cost on a
loaded machine); only one that would block waits, and a wait is a checkpoint
as usual.  Loops that may go on without blocking (bodies, splices) checkpoint
on each round.  Errors are Trio's, as from ``SocketStream``.  TLS streams go
through Trio's stream methods.
"""

from __future__ import annotations

import contextlib
import errno
import os

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
        # The socket to read and write directly (None: TLS, or another kind of stream).
        self._sock = stream.socket if isinstance(stream, trio.SocketStream) else None

    async def __aenter__(self) -> Side:
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Close the stream (a plain socket at once, without a checkpoint)."""
        if self._sock is not None:
            self._sock.close()
        else:
            await self.stream.aclose()

    async def receive(self, *, wait: bool = False) -> bytes | bytearray:
        """Up to CHUNK bytes from the stream; b"" at its end.

        *wait*: nothing can have come yet (a request was just sent, a read just came
        back empty), so wait for the socket before trying to read it.
        """
        sock = self._sock
        if sock is None:
            return await self.stream.receive_some(CHUNK)
        if wait:
            await trio.lowlevel.wait_readable(sock)
        while True:
            try:
                return os.read(_fd(sock), CHUNK)
            except BlockingIOError:
                pass
            except OSError as e:
                raise _trio_error(e) from e
            await trio.lowlevel.wait_readable(sock)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Send all of *data* to the stream."""
        sock = self._sock
        if sock is None:
            await self.stream.send_all(data)
            return
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(_fd(sock), view) :]
                continue
            except BlockingIOError:
                pass
            except OSError as e:
                raise _trio_error(e) from e
            await trio.lowlevel.wait_writable(sock)

    def fill_now(self) -> bool:
        """Read into the buffer what can be read without waiting; whether anything came.

        False also at the end of the stream, or when it cannot tell (TLS): then ``fill``.
        """
        if self._sock is None or self.eof:
            return False
        try:
            data = os.read(_fd(self._sock), CHUNK)
        except BlockingIOError:
            return False
        except OSError as e:
            raise _trio_error(e) from e
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    async def fill(self, *, wait: bool = False) -> bool:
        """Read more into the buffer; False at end of stream.  *wait*: as for ``receive``."""
        if self.eof:
            return False
        data = await self.receive(wait=wait)
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    async def read_head(self, limit: int, *, wait: bool = False) -> bytes | None:
        """The next head (through its blank line), or None when the stream ends before one.

        *wait*: as for ``receive``, for the first read.
        """
        while (end := find_head_end(self.buf)) < 0:
            if len(self.buf) > limit:
                raise HeadTooLarge(limit)
            if not await self.fill(wait=wait):
                return None
            wait = False
        if end > limit:
            raise HeadTooLarge(limit)
        head = bytes(self.buf[:end])
        del self.buf[:end]
        return head

    async def forward(self, dst: Side, framing: Framing, prefix: bytes, status: int) -> bool:
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
                await trio.lowlevel.checkpoint()
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
                await trio.lowlevel.checkpoint()
                if not await self.fill():
                    return False
        # Delimited by the end of the stream.
        out = prefix + self.buf
        self.buf.clear()
        if out:
            await dst.send_all(out)
        await _pump(self, dst)
        return True


def _fd(sock: trio.socket.SocketType) -> int:
    fd = sock.fileno()
    if fd < 0:
        raise trio.ClosedResourceError("the socket was closed")
    return fd


def _trio_error(e: OSError) -> Exception:
    if e.errno == errno.EBADF:
        return trio.ClosedResourceError("the socket was closed")
    return trio.BrokenResourceError(f"socket connection broken: {e}")


async def _pump(src: Side, dst: Side) -> None:
    if src.buf:
        buffered = bytes(src.buf)
        src.buf.clear()
        await dst.send_all(buffered)
    while not src.eof:
        await trio.lowlevel.checkpoint()
        data = await src.receive()
        if not data:
            src.eof = True
            break
        await dst.send_all(data)
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        if isinstance(dst.stream, trio.abc.HalfCloseableStream):
            await dst.stream.send_eof()
        else:  # TLS cannot half-close: the end of one direction ends the connection
            await dst.stream.aclose()


async def splice(a: Side, b: Side) -> None:
    """Copy bytes both ways (buffered ones first) until both directions have ended.

    A half-close in one direction is forwarded without cutting the other.
    """
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_pump, a, b)
            nursery.start_soon(_pump, b, a)
    except* (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
