"""Apps of kernels whose network the proxy cannot reach, forwarded through the kernel runner.

With Docker's ``host`` network an app listens on the agent's own host, where
app proxies reach it.  With ``none`` (or a bridge, whose addresses are private
to this host) it listens in the kernel's network namespace only.  For those,
each started app gets a listener on the agent's host (``agent.host``, a port
the system picks); each connection to it is carried to the app by the kernel
runner's ``connect`` op (:mod:`backendai.kernel.tunnel`) over the runner's
unix socket, raw both ways, half-closes passed on.  A connection must open
with the forward preamble of that app's route (keyed from the cluster secret,
:func:`~backendai.netproxy.forward_preamble`), which app proxies and the
manager's tunnels send: the listener is on the agent's network, and the app
behind it (a token-less Jupyter, say) must be reached only through them; a
stale route that points at a port now forwarding another app is refused.

A forward lives while its kernel does: a sweep every ``SWEEP_SECONDS`` closes
the forwards of kernels this agent no longer has.  Starting the same app again
keeps its forward (and so its route); an app restarted on another port in the
kernel gets a new one.  Each kernel's forwards are written to ``forwards.json``
in its scratch directory, and an agent that starts again reopens them on the
same ports (:meth:`AppForwarder.restore`), so the routes pointing there stay good.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import os
from dataclasses import dataclass, field
from typing import NoReturn

import trio

from ..errors import BackendAIError
from ..netproxy import forward_key, forward_preamble
from .execution import ExecutionService
from .runner_client import RunnerConnection

__all__ = ["AppForwarder"]

log = logging.getLogger(__name__)

SWEEP_SECONDS = 15.0
CHUNK = 65536
# Proxies send the preamble at once; a connection that does not is dropped soon.
PREAMBLE_TIMEOUT = 2.0
# Connections to one forward that have not sent their preamble yet (more are dropped).
MAX_UNADMITTED = 64
# Refusals are logged at most once in this many seconds per forward.
REFUSAL_LOG_SECONDS = 60.0


@dataclass
class _Forward:
    app_port: int
    port: int
    preamble: bytes
    route: str
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    unadmitted: int = 0
    refused: int = 0
    refusals_logged_at: float = -math.inf


class AppForwarder:
    def __init__(self, service: ExecutionService, host: str, secret: str) -> None:
        self.service = service
        self.host = host
        self._key = forward_key(secret)
        self._forwards: dict[tuple[str, str], _Forward] = {}
        self._nursery: trio.Nursery | None = None

    async def serve(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            try:
                while True:
                    await trio.sleep(SWEEP_SECONDS)
                    try:
                        await self.sweep()
                    except BackendAIError as e:  # Docker restarting, say: next time
                        log.warning("app forwards: cannot list kernels (%s); trying later", e)
            finally:
                self._nursery = None
        raise AssertionError("the app forwarder's nursery ended without being cancelled")

    def port_of(self, kernel_id: str, app: str) -> int | None:
        found = self._forwards.get((kernel_id, app))
        return found.port if found is not None else None

    async def forward(self, kernel_id: str, app: str, app_port: int, route: str) -> int:
        """The port on this host that reaches *app* (on *app_port* in the kernel), for
        connections that open with the preamble of *route*."""
        if self._nursery is None:
            raise BackendAIError("the agent's app forwarder is not running")
        key = (kernel_id, app)
        preamble = forward_preamble(self._key, route)
        found = self._forwards.get(key)
        if found is not None and (found.app_port, found.preamble) == (app_port, preamble):
            return found.port
        [listener] = await trio.open_tcp_listeners(0, host=self.host)
        # Another start of the same app may have made its forward meanwhile.
        found = self._forwards.get(key)
        if found is not None and (found.app_port, found.preamble) == (app_port, preamble):
            await listener.aclose()
            return found.port
        if found is not None:
            found.scope.cancel()
        port = self._open(listener, kernel_id, app, _Forward(app_port, 0, preamble, route))
        await trio.to_thread.run_sync(self._save, kernel_id)
        return port

    def _open(self, listener: trio.SocketListener, kernel_id: str, app: str, fwd: _Forward) -> int:
        assert self._nursery is not None
        fwd.port = int(listener.socket.getsockname()[1])
        self._forwards[(kernel_id, app)] = fwd
        self._nursery.start_soon(self._serve_forward, listener, kernel_id, app, fwd)
        log.info(
            "app %s of kernel %s: forwarding %s:%d to port %d in the kernel",
            app,
            kernel_id,
            self.host,
            fwd.port,
            fwd.app_port,
        )
        return fwd.port

    def _state_file(self, kernel_id: str) -> str:
        return os.path.join(self.service.ipc_dir(kernel_id).parent, "forwards.json")

    def _save(self, kernel_id: str) -> None:
        state = {
            app: {"app_port": f.app_port, "port": f.port, "route": f.route}
            for (kid, app), f in self._forwards.items()
            if kid == kernel_id
        }
        path = self._state_file(kernel_id)
        try:
            with open(path + ".tmp", "w") as out:
                json.dump(state, out)
            os.replace(path + ".tmp", path)
        except OSError as e:  # the forward works; only a restart would lose it
            log.warning("cannot record the app forwards of kernel %s in %s: %s", kernel_id, path, e)

    async def restore(self, kernel_id: str) -> int:
        """Reopen the forwards a previous agent process made for *kernel_id*, on the same
        ports; how many were reopened (a port taken meanwhile is logged and skipped)."""
        path = self._state_file(kernel_id)
        try:
            raw = await trio.Path(path).read_text()
        except FileNotFoundError:
            return 0
        except OSError as e:
            log.warning("cannot read the app forwards of kernel %s: %s", kernel_id, e)
            return 0
        try:
            state = json.loads(raw)
            entries = [
                (str(app), int(v["app_port"]), int(v["port"]), str(v["route"]))
                for app, v in state.items()
            ]
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            log.warning("ignoring the app forwards recorded in %s: %s", path, e)
            return 0
        reopened = 0
        for app, app_port, port, route in entries:
            try:
                [listener] = await trio.open_tcp_listeners(port, host=self.host)
            except OSError as e:
                log.warning(
                    "app %s of kernel %s: cannot reopen its forward on port %d (%s); it answers "
                    "again once the app is started again",
                    app,
                    kernel_id,
                    port,
                    e.strerror or e,
                )
                continue
            preamble = forward_preamble(self._key, route)
            self._open(listener, kernel_id, app, _Forward(app_port, 0, preamble, route))
            reopened += 1
        return reopened

    async def sweep(self) -> None:
        """Close the forwards of kernels that are gone."""
        if not self._forwards:
            return
        alive = {k.kernel_id for k in await self.service.registry.backend.list()}
        for (kernel_id, app), fwd in list(self._forwards.items()):
            if kernel_id not in alive:
                log.info("kernel %s is gone: closing the forward of its app %s", kernel_id, app)
                self.close(kernel_id, app, fwd)

    def close(self, kernel_id: str, app: str, fwd: _Forward) -> None:
        fwd.scope.cancel()
        if self._forwards.get((kernel_id, app)) is fwd:
            del self._forwards[(kernel_id, app)]

    async def _serve_forward(
        self, listener: trio.SocketListener, kernel_id: str, app: str, fwd: _Forward
    ) -> None:
        with fwd.scope:
            async with listener, trio.open_nursery() as nursery:
                while True:
                    try:
                        stream = await listener.accept()
                    except OSError as e:  # out of file descriptors, say: a moment later
                        log.warning("app %s of kernel %s: accept failed: %s", app, kernel_id, e)
                        await trio.sleep(0.1)
                        continue
                    nursery.start_soon(self._carry, stream, kernel_id, fwd)

    async def _carry(self, client: trio.SocketStream, kernel_id: str, fwd: _Forward) -> None:
        app_port = fwd.app_port
        async with client:
            if fwd.unadmitted >= MAX_UNADMITTED:
                self._refused(fwd, client, f"{MAX_UNADMITTED} connections await their preamble")
                return
            fwd.unadmitted += 1
            try:
                admitted = await _admitted(client, fwd.preamble)
            finally:
                fwd.unadmitted -= 1
            if not admitted:
                self._refused(fwd, client, "it did not open with this app's forward preamble")
                return
            try:
                conn = await self.service.connect(kernel_id)
            except BackendAIError as e:
                log.info("kernel %s: cannot carry a connection to its app: %s", kernel_id, e)
                return
            try:
                await conn.request(
                    {"op": "connect", "port": app_port},
                    f"connect to port {app_port} in kernel {kernel_id!r}",
                )
            except BackendAIError as e:
                log.info("%s", e)
                await conn.aclose()
                return
            async with conn.stream:
                await _splice(client, conn)

    def _refused(self, fwd: _Forward, client: trio.SocketStream, why: str) -> None:
        fwd.refused += 1
        now = trio.current_time()
        if now - fwd.refusals_logged_at >= REFUSAL_LOG_SECONDS:
            log.warning(
                "app forward on port %d refused a connection from %s: %s "
                "(%d refused since the last such message)",
                fwd.port,
                _peer(client),
                why,
                fwd.refused,
            )
            fwd.refusals_logged_at = now
            fwd.refused = 0


async def _admitted(client: trio.SocketStream, preamble: bytes) -> bool:
    """Whether the connection opens with *preamble*.  Read up to its length or its first
    line end, nothing beyond, and judged whole (no early answer that would tell how much
    of a guess was right)."""
    want = len(preamble)
    got = b""
    with trio.move_on_after(PREAMBLE_TIMEOUT):
        try:
            while len(got) < want and b"\n" not in got:
                chunk = await client.receive_some(want - len(got))
                if not chunk:
                    break
                got += chunk
        except trio.BrokenResourceError:
            return False
    return hmac.compare_digest(got, preamble)


def _peer(stream: trio.SocketStream) -> str:
    try:
        return str(stream.socket.getpeername()[0])
    except OSError:
        return "?"


async def _splice(client: trio.SocketStream, runner: RunnerConnection) -> None:
    """Bytes both ways (what the runner sent after its reply first); half-closes passed on."""
    leftover = runner.take_buffered()

    async def pump(src: trio.SocketStream, dst: trio.SocketStream, first: bytes) -> None:
        try:
            if first:
                await dst.send_all(first)
            while data := await src.receive_some(CHUNK):
                await dst.send_all(data)
            await dst.send_eof()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            nursery.cancel_scope.cancel()  # one side broke: the connection is over

    async with trio.open_nursery() as nursery:
        nursery.start_soon(pump, client, runner.stream, b"")
        nursery.start_soon(pump, runner.stream, client, leftover)
