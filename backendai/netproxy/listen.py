"""Listening for proxy clients: plain TCP, or TLS terminated here."""

from __future__ import annotations

import errno
import logging
import os
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import NoReturn

import trio

from ..errors import ConfigError, UnavailableError

__all__ = ["bound_port", "open_listeners", "serve_listeners", "tls_context"]

log = logging.getLogger(__name__)
Handler = Callable[[trio.abc.Stream], Awaitable[None]]
# accept() failing for want of resources: wait a little and go on (as trio.serve_listeners does).
_CAPACITY_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
_CAPACITY_SLEEP = 0.1
# Connections accepted in a row, without waiting, before letting other tasks run.
_ACCEPT_BATCH = 16


def tls_context(cert: str, key: str) -> ssl.SSLContext | None:
    """A server TLS context from PEM files; None when neither is configured."""
    if not cert and not key:
        return None
    if not cert or not key:
        raise ConfigError(
            f"appproxy.tls_cert {cert!r} and appproxy.tls_key {key!r}: set both for TLS, or neither"
        )
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(
            f"appproxy.tls_cert {cert!r} / tls_key {key!r}: cannot load: {e}; "
            "expected a PEM certificate chain and its key"
        ) from e
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


async def open_listeners(
    host: str, port: int, tls: ssl.SSLContext | None, *, reuse_port: bool = False
) -> list[trio.abc.Listener[trio.abc.Stream]]:
    """Listen on host:port; with *reuse_port*, other processes may listen there too (the
    kernel spreads new connections over them)."""
    try:
        if reuse_port:
            raw: list[trio.SocketListener] = [await _reuse_port_listener(host, port)]
        else:
            raw = await trio.open_tcp_listeners(port, host=host)
    except OSError as e:
        raise UnavailableError(f"app proxy: cannot listen on {host}:{port}: {e.strerror}") from e
    if tls is None:
        return list(raw)
    return [trio.SSLListener(listener, tls, https_compatible=True) for listener in raw]


async def _reuse_port_listener(host: str, port: int) -> trio.SocketListener:
    sock = trio.socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        await sock.bind((host, port))
        sock.listen(4096)
    except OSError:
        sock.close()
        raise
    return trio.SocketListener(sock)


def bound_port(listener: trio.abc.Listener[trio.abc.Stream]) -> int:
    while isinstance(listener, trio.SSLListener):
        listener = listener.transport_listener
    assert isinstance(listener, trio.SocketListener)
    port: int = listener.socket.getsockname()[1]
    return port


async def serve_listeners(
    handler: Handler,
    listeners: list[trio.abc.Listener[trio.abc.Stream]],
    *,
    task_status: trio.TaskStatus[list[trio.abc.Listener[trio.abc.Stream]]] = (
        trio.TASK_STATUS_IGNORED
    ),
) -> NoReturn:
    """Like ``trio.serve_listeners``: a task running *handler* for each connection, closed
    after it.  A plain TCP listener accepts what is waiting in a batch, straight from its
    socket, and a plain connection is closed without a trip through the scheduler."""
    async with trio.open_nursery() as nursery:
        for listener in listeners:
            nursery.start_soon(_accept_forever, listener, handler, nursery)
        task_status.started(listeners)
    raise AssertionError("the listeners returned")


async def _run_handler(stream: trio.abc.Stream, handler: Handler) -> None:
    try:
        await handler(stream)
    finally:
        if isinstance(stream, trio.SocketStream):
            stream.socket.close()
        else:
            await trio.aclose_forcefully(stream)


async def _accept_forever(
    listener: trio.abc.Listener[trio.abc.Stream], handler: Handler, nursery: trio.Nursery
) -> None:
    if not isinstance(listener, trio.SocketListener):  # TLS: Trio's way
        async with listener:
            while True:
                try:
                    stream = await listener.accept()
                except OSError as e:
                    await _accept_failed(e)
                else:
                    nursery.start_soon(_run_handler, stream, handler)
    # The same listening socket as a standard one (a duplicate descriptor), to accept from
    # without waiting when connections are queued already.
    listening = listener.socket
    raw = socket.socket(fileno=os.dup(listening.fileno()))
    raw.setblocking(False)
    async with listener:
        with raw:
            batch = 0
            while True:
                try:
                    conn, _ = raw.accept()
                except BlockingIOError:
                    batch = 0
                    await trio.lowlevel.wait_readable(listening)
                    continue
                except OSError as e:
                    await _accept_failed(e)
                    continue
                stream = trio.SocketStream(trio.socket.from_stdlib_socket(conn))
                nursery.start_soon(_run_handler, stream, handler)
                batch += 1
                if batch >= _ACCEPT_BATCH:
                    batch = 0
                    await trio.lowlevel.checkpoint()


async def _accept_failed(e: OSError) -> None:
    if e.errno not in _CAPACITY_ERRNOS:
        raise e
    log.error("accept failed: %s; retrying in %g s", os.strerror(e.errno), _CAPACITY_SLEEP)
    await trio.sleep(_CAPACITY_SLEEP)
