"""Image pulls on an agent: check the registry, pull through the backend, report progress.

:class:`PullTracker` (pure) folds Docker-style progress messages (``{"id": layer,
"status": "Downloading", "progressDetail": {"current": n, "total": m}}``; the Docker
backend relays the engine's, the dummy backend makes its own) into layer and byte
counts, and turns an ``error`` message into an :class:`~backendai.errors.ImagePullError`
whose ``reason`` (:func:`classify_pull_error`) the session will carry.

:func:`pull_image` first asks the registry (with the credentials the manager sent) which
platforms the tag offers, so a wrong architecture, a missing tag or refused credentials
fail at once with the registry's own words, then has the backend pull, reporting a
snapshot every ``PROGRESS_INTERVAL`` seconds, all within the pull timeout.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import trio

from ..errors import ImagePullError, RegistryError
from ..hw.arch import host_architecture
from ..registry import ImageRecord, RegistrySpec, open_registry_client, parse_reference
from .backend import ComputeBackend

__all__ = [
    "PROGRESS_INTERVAL",
    "PullTracker",
    "check_platform",
    "classify_pull_error",
    "pull_image",
    "timeout_error",
]

log = logging.getLogger(__name__)

# Seconds between two progress reports of one pull.
PROGRESS_INTERVAL = 0.5
_DONE = {"Pull complete", "Already exists"}
_FINISHED_DOWNLOAD = {"Download complete", "Verifying Checksum", "Extracting", "Pull complete"}
_REASONS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("no-space", re.compile(r"no space left on device|disk quota exceeded", re.I)),
    ("wrong-arch", re.compile(r"no matching manifest|does not match the specified platform", re.I)),
    (
        "auth-failed",
        re.compile(
            r"unauthorized|authentication required|access.*denied|denied:|"
            r"no basic auth credentials|incorrect username or password",
            re.I,
        ),
    ),
    (
        "not-found",
        re.compile(r"manifest unknown|not found|name unknown|repository does not exist", re.I),
    ),
    (
        "unreachable",
        re.compile(
            r"connection refused|no such host|i/o timeout|network is unreachable|"
            r"timeout exceeded|server gave HTTP response to HTTPS client",
            re.I,
        ),
    ),
)


def classify_pull_error(message: str) -> str:
    """One word for why a pull failed, from the engine's or registry's message."""
    for reason, pattern in _REASONS:
        if pattern.search(message):
            return reason
    return "failed"


@dataclass
class PullTracker:
    """Layer and byte counts of one pull, from its progress messages (pure)."""

    image: str
    layers: dict[str, str] = field(default_factory=dict)  # layer id -> last status
    total: dict[str, int] = field(default_factory=dict)  # layer id -> bytes
    current: dict[str, int] = field(default_factory=dict)  # layer id -> bytes downloaded
    messages: int = 0

    def feed(self, msg: Mapping[str, Any]) -> None:
        self.messages += 1
        error = (msg.get("errorDetail") or {}).get("message") or msg.get("error")
        if error:
            text = str(error)
            raise ImagePullError(
                f"pulling {self.image} failed: {text}", reason=classify_pull_error(text)
            )
        layer, status = msg.get("id"), str(msg.get("status", ""))
        if not layer or not isinstance(layer, str) or status.startswith("Pulling from"):
            return
        self.layers[layer] = status
        detail = msg.get("progressDetail") or {}
        if status == "Downloading" and isinstance(detail, Mapping):
            if detail.get("total"):
                self.total[layer] = int(detail["total"])
            self.current[layer] = int(detail.get("current") or 0)
        elif status in _FINISHED_DOWNLOAD and layer in self.total:
            self.current[layer] = self.total[layer]

    def snapshot(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "layersTotal": len(self.layers),
            "layersDone": sum(1 for s in self.layers.values() if s in _DONE),
            "bytesTotal": sum(self.total.values()),
            "bytesDone": sum(self.current.values()),
        }


Report = Callable[[dict[str, Any]], Awaitable[None]]


async def check_platform(registry: RegistrySpec, image: str, arch: str) -> ImageRecord:
    """The registry's record of *image* for *arch*; ImagePullError if it has none."""
    ref = parse_reference(image)
    try:
        async with open_registry_client(registry) as client:
            records = await client.platforms(ref.repository, ref.reference)
    except RegistryError as e:
        raise ImagePullError(f"cannot pull {image}: {e}", reason=e.reason) from e
    for record in records:
        if record.architecture == arch:
            return record
    offered = ", ".join(sorted({r.architecture or "unknown" for r in records})) or "none"
    raise ImagePullError(
        f"cannot pull {image}: registry {registry.name!r} offers it only for {offered}; "
        f"this agent is {arch}",
        reason="wrong-arch",
    )


async def pull_image(
    backend: ComputeBackend,
    image: str,
    registry: RegistrySpec,
    tracker: PullTracker,
    report: Report,
) -> dict[str, Any]:
    """Pull *image*, folding progress into *tracker* and reporting it every
    ``PROGRESS_INTERVAL`` seconds; returns the last snapshot.  Callers bound it with
    ``trio.fail_after`` and turn the timeout into :func:`timeout_error`."""
    arch = host_architecture()
    started = trio.current_time()
    record = await check_platform(registry, image, arch)
    log.info(
        "pulling %s (%s, %d layers, %d bytes) from registry %s",
        image,
        arch,
        len(record.layers),
        record.size_bytes,
        registry.name,
    )
    async with trio.open_nursery() as nursery:

        async def reporter() -> None:
            last: dict[str, Any] | None = None
            while True:
                await trio.sleep(PROGRESS_INTERVAL)
                snap = tracker.snapshot()
                if snap != last:
                    await report(snap)
                    last = snap

        nursery.start_soon(reporter)
        await backend.pull(image, registry, tracker.feed)
        nursery.cancel_scope.cancel()
    snap = tracker.snapshot()
    snap["seconds"] = round(trio.current_time() - started, 3)
    log.info(
        "pulled %s: %d layers (%d already present), %d bytes in %.1f s",
        image,
        snap["layersTotal"],
        sum(1 for s in tracker.layers.values() if s == "Already exists"),
        snap["bytesDone"],
        snap["seconds"],
    )
    return snap


def timeout_error(tracker: PullTracker, limit: float) -> ImagePullError:
    snap = tracker.snapshot()
    return ImagePullError(
        f"pulling {tracker.image} did not finish within the pull timeout of {limit:g} s "
        f"({snap['layersDone']}/{snap['layersTotal']} layers, "
        f"{snap['bytesDone']}/{snap['bytesTotal']} bytes)",
        reason="timeout",
    )
