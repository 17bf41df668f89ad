"""A Python for the kernel runner in images that have none.

The runner is Python; an image without it (a shell-only image, a compiled
program on a slim base) still gets batch mode, terminals and files: the agent
lends it a runtime.  From the stock image (``backendai/python:3.11``) it copies
once the interpreter, its standard library (trimmed), the shared libraries it
links and the dynamic loader into ``<data_dir>/agents/<id>/runner-runtime/``,
and bind-mounts that read-only at ``RUNTIME_MOUNT``.  The runner starts through
the lent loader (``ld.so --library-path ...``), so it needs nothing from the
image: not its libc, not even a loader.  What the runner starts (``/bin/sh -c``
for batch steps, the terminal's shell) uses the image's own programs and
libraries; query mode uses the image's ``python3`` and says so when there is none.

Which images get it: those without an ``ai.backend.runtime-path`` label (kernel
images label their Python; :func:`runner_launch`).  Blocking (docker-py, file
copies): called from the Docker backend's worker threads.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import docker
import docker.errors

from ..errors import ImageNotFound, KernelError
from .backend import RUNNER_MOUNT

__all__ = [
    "RUNTIME_MOUNT",
    "RUNTIME_SOURCE",
    "RunnerLaunch",
    "RunnerRuntime",
    "needs_runtime",
    "runner_launch",
]

log = logging.getLogger(__name__)

RUNTIME_MOUNT = "/opt/backendai/runtime"
RUNTIME_SOURCE = "backendai/python:3.11"
# Run in a throwaway container of RUNTIME_SOURCE, with the destination at /out.
_EXTRACT = r"""
set -e
mkdir -p /out/lib /out/bin
for f in $(ldd /usr/bin/python3 | awk '/=>/ {print $3}'); do cp -L "$f" /out/lib/; done
for f in /lib64/ld-linux-*.so.* /lib/ld-linux-*.so.*; do
  if [ -e "$f" ]; then cp -L "$f" /out/lib/ld.so; break; fi
done
test -e /out/lib/ld.so
cp -L /usr/bin/python3 /out/bin/python3
v=$(python3 -c 'import sys; print("python%d.%d" % sys.version_info[:2])')
tar -C /usr/lib --exclude="$v/test" --exclude="$v/idlelib" --exclude="$v/tkinter" \
  --exclude="$v/ensurepip" --exclude="$v/lib2to3" --exclude="$v/pydoc_data" \
  --exclude='*/__pycache__' -cf - "$v" | tar -C /out/lib -xf -
"""


@dataclass(frozen=True)
class RunnerLaunch:
    """How a container starts the runner: its command, extra binds and environment."""

    command: list[str]
    binds: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    environ: Mapping[str, str] = field(default_factory=dict)


def runner_launch(image_labels: Mapping[str, str], runtime: Path | None) -> RunnerLaunch:
    """The image's own Python when its labels name one, else the lent *runtime*."""
    runner = f"{RUNNER_MOUNT}/runner.py"
    python = image_labels.get("ai.backend.runtime-path")
    if python or runtime is None:
        return RunnerLaunch([python or "python3", runner])
    command = [
        f"{RUNTIME_MOUNT}/lib/ld.so",
        "--library-path",
        f"{RUNTIME_MOUNT}/lib",
        f"{RUNTIME_MOUNT}/bin/python3",
        "-E",  # the image's PYTHON* variables are for its own Python, not ours
        "-s",
        runner,
    ]
    return RunnerLaunch(
        command,
        {str(runtime): {"bind": RUNTIME_MOUNT, "mode": "ro"}},
        # Query mode: the image's python3, if it has one.
        {"BACKENDAI_PYTHON": "python3"},
    )


def needs_runtime(image_labels: Mapping[str, str]) -> bool:
    return not image_labels.get("ai.backend.runtime-path")


class RunnerRuntime:
    """The lent runtime on this agent, extracted on first use."""

    def __init__(self, root: Path, source: str = RUNTIME_SOURCE) -> None:
        self.root = root
        self.source = source
        self._lock = threading.Lock()

    def ensure(self, api: docker.APIClient) -> Path:
        """The runtime's directory, extracting it from the source image if needed."""
        try:
            image_id = str(api.inspect_image(self.source)["Id"])  # type: ignore[no-untyped-call]
        except docker.errors.ImageNotFound:
            raise ImageNotFound(
                f"this image has no Python, and the runner's runtime comes from {self.source}, "
                "which is not on this agent; build it (backendai image build python)"
            ) from None
        target = self.root / image_id.removeprefix("sha256:")[:16]
        with self._lock:
            if (target / "bin" / "python3").exists():
                return target
            tmp = self.root / f".{target.name}.{os.getpid()}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            log.info("extracting the runner's runtime from %s into %s", self.source, target)
            container = api.create_container(
                image=self.source,
                command=["/bin/sh", "-c", _EXTRACT],
                user="0",
                host_config=api.create_host_config(
                    binds={str(tmp.resolve()): {"bind": "/out", "mode": "rw"}},
                    network_mode="none",
                ),
            )
            try:
                api.start(container["Id"])
                code = api.wait(container["Id"])["StatusCode"]
                logs = api.logs(container["Id"]).decode("utf-8", "replace")
            finally:
                api.remove_container(container["Id"], force=True)
            if code != 0:
                shutil.rmtree(tmp, ignore_errors=True)
                raise KernelError(
                    f"could not extract the runner's runtime from {self.source} "
                    f"(exit code {code}): {logs.strip()[-500:]}"
                )
            tmp.rename(target)
            return target
