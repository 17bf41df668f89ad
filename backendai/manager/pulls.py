"""Image pulls as the manager sees them: progress events in, session events and reasons out.

An agent that lacks a kernel's image pulls it inside the create call and reports
``kernel_status`` events: ``PULLING`` (first bare, then every half second with a
``progress`` snapshot: layers and bytes), then ``PREPARED`` with the final snapshot.
The status changes go through the agent monitor like any other; each progress snapshot
becomes a ``session_pulling`` event (``progress`` in its data; ``status`` PREPARED and
``progress.seconds`` on the last one) for the session's watchers, and the finished pull
is written to the session's history.

A failed pull comes back as the agent's problem type ``image-pull-<reason>``; the
session ends in ERROR with the reason below and the agent's message in its history.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import sqlalchemy as sa

from ..bus import Event
from ..db.tables import sessions
from ..errors import RPCError
from . import repo
from .context import ManagerContext

__all__ = ["PULL_ERROR_REASONS", "launch_failure_reason", "publish_pull_progress"]

log = logging.getLogger(__name__)

# The agent's pull failure -> the session's reason (status_info).
_REASONS = {
    "auth-failed": "image-auth-failed",
    "not-found": "image-not-found",
    "wrong-arch": "image-wrong-arch",
    "no-space": "image-no-space",
    "timeout": "image-pull-timeout",
    "unsupported": "image-pull-unsupported",
    "unreachable": "image-pull-failed",
    "failed": "image-pull-failed",
}
PULL_ERROR_REASONS = frozenset(_REASONS.values())


def launch_failure_reason(error: BaseException) -> str:
    """The reason a session whose kernel could not be created ends with."""
    if isinstance(error, RPCError):
        if error.slug.startswith("image-pull-"):
            return _REASONS.get(error.slug.removeprefix("image-pull-"), "image-pull-failed")
        if error.status == 404:
            return "image-not-found"
    return "failed-to-start"


def _describe(progress: dict[str, Any]) -> str:
    mb = 1_000_000
    text = (
        f"pulled {progress.get('image')}: {progress.get('layersDone')}/"
        f"{progress.get('layersTotal')} layers, {progress.get('bytesDone', 0) / mb:.1f} MB"
    )
    if "seconds" in progress:
        text += f" in {progress['seconds']:.1f} s"
    return text


async def publish_pull_progress(ctx: ManagerContext, event: Event) -> None:
    """Broadcast a pull's progress as ``session_pulling``; record a finished pull."""
    progress = event.data.get("progress")
    if not isinstance(progress, dict):
        return
    session_id = str(event.data.get("session_id"))
    kernel_id = str(event.data.get("kernel_id"))
    finished = event.data.get("status") == "PREPARED"

    def _load(conn: sa.Connection) -> sa.RowMapping | None:
        if finished:
            repo.record(
                conn, session_id, kernel_id, "PREPARED", None, _describe(progress), time.time()
            )
        return (
            conn.execute(
                sa.select(sessions.c.name, sessions.c.access_key, sessions.c.status).where(
                    sessions.c.id == session_id
                )
            )
            .mappings()
            .first()
        )

    row = await ctx.db.run(_load)
    if row is None:
        log.debug("pull progress for unknown session %s ignored", session_id)
        return
    if finished:
        log.info("session %s: %s on agent %s", row["name"], _describe(progress), event.source)
    data = {
        "sessionId": session_id,
        "sessionName": row["name"],
        "ownerAccessKey": row["access_key"],
        "kernelId": kernel_id,
        "status": "PULLING" if not finished else "PREPARED",
        "reason": "",
        "exitCode": None,
        "progress": progress,
    }
    try:
        await ctx.bus.broadcast(Event("session_pulling", ctx.manager_id, data))
    except Exception:
        log.debug("could not broadcast pull progress of session %s", session_id, exc_info=True)
