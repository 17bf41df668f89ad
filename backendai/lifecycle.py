"""Process lifecycle: the only place that handles SIGTERM/SIGINT and talks to systemd.

A first signal cancels the role's nursery; its cleanups are shielded and each
bounded, and the whole shutdown is bounded by ``shutdown_timeout``: if the
process is still alive then, it exits with ``EXIT_SHUTDOWN_TIMEOUT``.  A second
signal exits at once.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

import trio

__all__ = [
    "EXIT_CONFIG",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_SHUTDOWN_TIMEOUT",
    "EXIT_SOFTWARE",
    "EXIT_UNAVAILABLE",
    "run_until_signalled",
    "sd_notify",
]

log = logging.getLogger(__name__)

# sysexits.h meanings, so that systemd and scripts can tell failures apart.
EXIT_OK = 0
EXIT_SOFTWARE = 70  # an internal error
EXIT_UNAVAILABLE = 69  # a dependency (database, Redis, Docker) does not answer
EXIT_CONFIG = 78  # the configuration is invalid
EXIT_SHUTDOWN_TIMEOUT = 75  # graceful shutdown overran its deadline
EXIT_INTERRUPTED = 130  # a second signal during shutdown


def sd_notify(state: str) -> None:
    """Tell systemd about READY=1 / STOPPING=1 when started as a notify service."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        try:
            s.sendto(state.encode(), addr)
        except OSError as e:
            log.debug("sd_notify(%s) failed: %s", state, e)


def _hard_exit(code: int, why: str) -> None:
    log.error("%s; exiting with code %d", why, code)
    logging.shutdown()
    os._exit(code)


async def _watch_signals(scope: trio.CancelScope, shutdown_timeout: float) -> NoReturn:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            name = signal.Signals(signum).name
            log.info("%s received: shutting down (deadline %.0f s)", name, shutdown_timeout)
            sd_notify("STOPPING=1")
            timer = threading.Timer(
                shutdown_timeout,
                _hard_exit,
                (EXIT_SHUTDOWN_TIMEOUT, f"shutdown did not finish within {shutdown_timeout:.0f} s"),
            )
            timer.daemon = True
            timer.start()
            scope.cancel()
            break
        async for signum in signals:
            _hard_exit(EXIT_INTERRUPTED, f"second {signal.Signals(signum).name} during shutdown")
    raise AssertionError("signal receiver ended")


async def run_until_signalled(
    serve: Callable[..., Awaitable[Any]],
    *args: Any,
    shutdown_timeout: float,
    on_started: Callable[[Any], None],
) -> None:
    """Start *serve* in a nursery, report when it accepts work, and run until a signal."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_watch_signals, nursery.cancel_scope, shutdown_timeout)
        info = await nursery.start(serve, *args)
        sd_notify("READY=1")
        on_started(info)
