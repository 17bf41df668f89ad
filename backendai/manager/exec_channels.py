"""Kept-alive execute channels to agents (the agent's ``/v1/exec`` websocket).

A run borrows a channel for its whole length and gives it back when it ended
in order, so a warm run costs one message each way on an open connection
instead of an HTTP request per step.  A channel that broke, or whose run was
abandoned (the client left), is closed instead: closing it is what tells the
agent to stop the run.  Idle channels are closed after ``IDLE_SECONDS``.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio
import trio_websocket

from ..config import Secret
from ..errors import RPCError

__all__ = ["ExecChannel", "ExecChannels"]

log = logging.getLogger(__name__)

IDLE_SECONDS = 60.0
MAX_IDLE_PER_AGENT = 32
# The runner's frames are at most a few hundred KiB; leave room for JSON escaping.
MAX_MESSAGE = 16 * 1024 * 1024
CONNECT_TIMEOUT = 10.0
# The agent sends something at least every 10 s of a run (an empty list when it is quiet).
SILENCE_TIMEOUT = 35.0


class ExecChannel:
    """One channel; :meth:`receive` gives the frames the agent sent together."""

    def __init__(self, ws: trio_websocket.WebSocketConnection, addr: str) -> None:
        self.ws = ws
        self.addr = addr
        self.reusable = False  # set by the borrower when its run ended in order
        self.idle_since = 0.0
        self.released = trio.Event()  # its holder task closes it

    async def send(self, message: dict[str, Any]) -> None:
        try:
            await self.ws.send_message(json.dumps(message, separators=(",", ":")))
        except trio_websocket.ConnectionClosed as e:
            raise RPCError(f"agent at {self.addr}: execute channel closed ({e.reason})") from e

    async def receive(self, run_id: str) -> list[dict[str, Any]]:
        """The next frames of run *run_id* (an empty list: the run is quiet); RPCError when
        the channel closed, the agent sent nothing for SILENCE_TIMEOUT seconds, or sent
        frames of another run (then the channel is out of step and must not be reused)."""
        try:
            with trio.fail_after(SILENCE_TIMEOUT):
                raw = await self.ws.get_message()
        except trio.TooSlowError as e:
            raise RPCError(
                f"agent at {self.addr}: nothing on the execute channel for "
                f"{SILENCE_TIMEOUT:g} s; the agent is gone or stuck"
            ) from e
        except trio_websocket.ConnectionClosed as e:
            raise RPCError(
                f"agent at {self.addr}: execute channel closed mid-run ({e.reason})"
            ) from e
        try:
            message = json.loads(raw)
        except ValueError as e:
            raise RPCError(f"agent at {self.addr} sent a bad execute message: {e}") from e
        frames = message.get("frames") if isinstance(message, dict) else None
        if not isinstance(frames, list) or not all(isinstance(f, dict) for f in frames):
            raise RPCError(
                f"agent at {self.addr} sent an execute message without a list of frames: "
                f"{str(raw)[:100]!r}"
            )
        if message.get("run_id") != run_id:
            raise RPCError(
                f"agent at {self.addr} sent frames of run {message.get('run_id')!r} "
                f"during run {run_id!r}; closing the channel"
            )
        return frames

    def close(self) -> None:
        """Have its holder task close it (the agent then stops a run still going)."""
        self.released.set()


class ExecChannels:
    """The pool, per agent address; channels live in *nursery* (trio-websocket's reader tasks)."""

    def __init__(self, nursery: trio.Nursery, secret: Secret) -> None:
        self._nursery = nursery
        self._headers = [(b"Authorization", f"Bearer {secret.reveal()}".encode())]
        self._idle: defaultdict[str, list[ExecChannel]] = defaultdict(list)

    @asynccontextmanager
    async def run(self, addr: str, execute: dict[str, Any]) -> AsyncIterator[ExecChannel]:
        """A channel on which *execute* has been sent; the borrower sets ``reusable`` when
        the run ended in order, or the channel is closed on the way out."""
        channel = await self._start(addr, execute)
        try:
            yield channel
        finally:
            self._give_back(channel)

    async def _start(self, addr: str, execute: dict[str, Any]) -> ExecChannel:
        idle = self._idle[addr]
        while idle:
            channel = idle.pop()
            try:
                await channel.send(execute)
            except RPCError:  # the agent restarted, or closed it: try the next
                channel.close()
                continue
            except BaseException:  # cancelled mid-send: the channel is in no known state
                channel.close()
                raise
            return channel
        channel = await self._connect(addr)
        try:
            await channel.send(execute)
        except BaseException:
            channel.close()
            raise
        return channel

    async def _connect(self, addr: str) -> ExecChannel:
        try:
            with trio.fail_after(CONNECT_TIMEOUT):
                channel: ExecChannel = await self._nursery.start(self._hold, addr)
        except trio.TooSlowError as e:
            raise RPCError(
                f"agent at {addr}: no execute channel within {CONNECT_TIMEOUT:g} s"
            ) from e
        return channel

    async def _hold(
        self, addr: str, *, task_status: trio.TaskStatus[ExecChannel] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Keep one channel open (in a nursery of its own, so that nothing that happens to
        it reaches the pool's) until it is closed."""
        url = f"ws://{addr}/v1/exec"
        started = False
        try:
            async with trio_websocket.open_websocket_url(
                url,
                extra_headers=self._headers,
                message_queue_size=4,
                max_message_size=MAX_MESSAGE,
            ) as ws:
                channel = ExecChannel(ws, addr)
                task_status.started(channel)
                started = True
                await channel.released.wait()
        except Exception as e:
            if started:  # it broke: its borrower sees the connection closed
                log.debug("execute channel to %s ended: %r", addr, e)
                return
            if isinstance(e, trio_websocket.ConnectionRejected):
                body = bytes(e.body or b"")[:300].decode(errors="replace")
                raise RPCError(
                    f"agent at {addr} refused the execute channel: {e.status_code} {body}",
                    status=e.status_code,
                ) from e
            if isinstance(e, trio_websocket.HandshakeError | OSError):
                cause = e.__cause__ or e.__context__ or e
                raise RPCError(
                    f"agent at {addr} unreachable for the execute channel: {cause!r}"
                ) from e
            raise

    def _give_back(self, channel: ExecChannel) -> None:
        idle = self._idle[channel.addr]
        if channel.reusable and not channel.ws.closed and len(idle) < MAX_IDLE_PER_AGENT:
            channel.reusable = False
            channel.idle_since = trio.current_time()
            idle.append(channel)
        else:
            channel.close()

    def sweep(self) -> None:
        """Close the channels idle longer than IDLE_SECONDS."""
        cutoff = trio.current_time() - IDLE_SECONDS
        for addr, idle in list(self._idle.items()):
            keep = [c for c in idle if c.idle_since >= cutoff and not c.ws.closed]
            for channel in idle:
                if channel not in keep:
                    channel.close()
            if keep:
                self._idle[addr] = keep
            else:
                del self._idle[addr]

    async def serve_sweeper(self) -> None:
        while True:
            await trio.sleep(IDLE_SECONDS / 2)
            self.sweep()

    def close(self) -> None:
        for idle in self._idle.values():
            for channel in idle:
                channel.close()
        self._idle.clear()
