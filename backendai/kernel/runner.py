"""The backendai kernel runner: the agent's peer inside every kernel.

Standard library only, Python 3.8+ (it runs on whatever ``python3`` the kernel
image has; it never imports the rest of backendai).  Started as::

    python3 /opt/backendai/kernel/runner.py

with ``BACKENDAI_IPC_DIR`` (default ``/opt/backendai/ipc``) naming the
directory the agent shares with the kernel, and ``BACKENDAI_WORK_DIR``
(default ``/home/work``) the directory user code runs in.  The runner listens
on ``<ipc>/runner.sock``; the socket is bound under a temporary name and
renamed into place, so the agent sees it only once it accepts connections.

Wire format, both directions: a 4-byte big-endian length, then that many bytes
of a UTF-8 JSON object with an ``"op"`` key (:mod:`.wire`).  The ops are
listed in :mod:`.server`; execution in :mod:`.runloop` (streaming,
backpressure, timeouts), :mod:`.query` and :mod:`.qchild` (the persistent
interpreter), :mod:`.batch`; terminals in :mod:`.ptyop`; files in
:mod:`.files`.

This file only bootstraps: it loads its own directory as the package
``backendai_runner`` (so the modules import each other relatively and nothing
in the directory shadows a standard module), then runs the server, or, with
``--query-child FD``, the query interpreter.

``BACKENDAI_STARTUP_COMMAND``, if set, runs once at start through
``/bin/sh -c`` with the runner's stdout and stderr.  SIGTERM or SIGINT: the
runner stops what runs for the kernel, removes its socket and exits 0.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from types import ModuleType

PACKAGE = "backendai_runner"


def load(module: str) -> ModuleType:
    """Import ``backendai_runner.<module>`` from this file's directory."""
    here = os.path.dirname(os.path.abspath(__file__))
    if sys.path and os.path.abspath(sys.path[0] or os.curdir) == here:
        del sys.path[0]  # the runner's modules are imported only through the package
    if PACKAGE not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            PACKAGE, os.path.join(here, "__init__.py"), submodule_search_locations=[here]
        )
        assert spec is not None
        assert spec.loader is not None
        package = importlib.util.module_from_spec(spec)
        sys.modules[PACKAGE] = package
        spec.loader.exec_module(package)
    return importlib.import_module(f"{PACKAGE}.{module}")


def main(argv: list[str]) -> int:
    if argv[:1] == ["--query-child"] and len(argv) == 2:
        code: int = load("qchild").main(int(argv[1]))
        return code
    code = load("server").main(os.path.abspath(__file__))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
