"""Listening for proxy clients: plain TCP, or TLS terminated here."""

from __future__ import annotations

import socket
import ssl

import trio

from ..errors import ConfigError, UnavailableError

__all__ = ["bound_port", "open_listeners", "tls_context"]


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
