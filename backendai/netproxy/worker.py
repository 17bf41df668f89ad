"""A worker process of the app proxy: one more listener on the main (wildcard) port.

Started by the app proxy role when ``appproxy.workers`` > 1, with its settings
in the environment variable ``BACKENDAI_APPPROXY_WORKER`` (JSON; it holds the
cluster secret, so it is never on a command line).  It follows the route table
over the role's route feed and exits when the feed ends (the role is gone).
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import trio

from .feed import follow_feed
from .gate import AuthGate
from .listen import tls_context
from .registry import RouteRegistry
from .routes import ProxySettings
from .server import ProxyServer
from .spent import SpentTokens

__all__ = ["ENV", "worker_environment"]

ENV = "BACKENDAI_APPPROXY_WORKER"
log = logging.getLogger(__name__)


def worker_environment(spec: dict[str, Any]) -> dict[str, str]:
    return {**os.environ, ENV: json.dumps(spec)}


async def serve_worker(spec: dict[str, Any]) -> None:
    registry = RouteRegistry(
        spec["mode"],
        domain=spec["domain"],
        public_host=spec["host"],
        port=spec["port"],
        ports=range(0),
    )
    server = ProxyServer(
        registry,
        ProxySettings(**spec["settings"]),
        host=spec["host"],
        tls=tls_context(spec["tls_cert"], spec["tls_key"]),
        gate=AuthGate(
            spec["secret"],
            cookie_ttl=spec["cookie_ttl"],
            secure=bool(spec["tls_cert"]),
            spent=SpentTokens(Path(spec["spent_dir"])),
        ),
        reuse_port=True,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        gc.freeze()  # as the app proxy role does: startup's objects out of the collector's way
        await follow_feed(spec["feed"], registry, server.listen_on)
        log.info("app proxy worker %d: the route feed ended; stopping", os.getpid())
        nursery.cancel_scope.cancel()


def main() -> int:
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    raw = os.environ.pop(ENV, "")
    if not raw:
        log.error("%s is not set; the app proxy role starts its workers itself", ENV)
        return 78
    with contextlib.suppress(KeyboardInterrupt):
        trio.run(serve_worker, json.loads(raw))
    return 0


if __name__ == "__main__":
    sys.exit(main())
