"""Dropping abandoned uploads, so their bytes and the quota they hold come back."""

from __future__ import annotations

import logging
import time
from typing import NoReturn

import trio

from .uploads import expire_uploads
from .volumes import Volumes

__all__ = ["serve_upload_janitor"]

log = logging.getLogger(__name__)


async def serve_upload_janitor(
    volumes: Volumes,
    idle: float,
    limiter: trio.CapacityLimiter,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Every ``idle / 4`` seconds (at most hourly), drop uploads idle longer than *idle*."""
    task_status.started()
    while True:
        await trio.sleep(min(idle / 4, 3600.0))
        for name in volumes.names():
            backend = volumes.get(name)
            dropped = await trio.to_thread.run_sync(
                expire_uploads, backend, idle, time.time(), limiter=limiter
            )
            if dropped:
                log.info(
                    "volume %s: dropped %d upload(s) idle for over %.0f s", name, dropped, idle
                )
