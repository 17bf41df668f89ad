"""The execute websocket (``/stream/session/{id}/execute``): runs relayed over agent channels.

The first message of a run is ``{mode, code, options}``; results follow as
they come; on ``waiting-input`` the client answers with a raw string; the run
ends at a finished status, and the socket then takes the next run's first
message (Backend.AI's clients close it instead).  Each run borrows a
kept-alive execute channel to the agent (:mod:`.exec_channels`), which relays
the kernel runner's frames as they come.

While a run goes on, the client's socket and the channel are both read: an
answer is passed on only while the run waits for one, and a run can end while
the user is still typing (an interrupt, an exec timeout): the client hears of
it at once, and the answer that comes afterwards is dropped.  Messages sent
early (the next run's) wait their turn.  A client that goes away mid-run has
its run interrupted: its channel closes.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections import deque
from typing import Any

import trio
from quart import websocket

from ..errors import APIError, InvalidAPIParameters, RPCError
from .context import ManagerContext
from .exec_channels import ExecChannel
from .exec_results import fold_frames, parse_first_message, split_result
from .kernel_access import (
    ACTIVITY_WRITE_INTERVAL,
    KernelTarget,
    api_error,
    caller_target,
)

__all__ = ["serve_execute_stream"]

log = logging.getLogger(__name__)

# Messages a client may send ahead while a run goes on (the next runs' first messages).
MAX_EARLY = 16


class _Client:
    """The client's side: its messages, those that came while a run went on first."""

    def __init__(self) -> None:
        self.early: deque[str | bytes] = deque()
        # The last run ended while it waited for input: the answer may still come.
        self.late_answer = False

    async def next_run(self) -> str | bytes:
        while True:
            raw = self.early.popleft() if self.early else await websocket.receive()
            if self.late_answer:
                self.late_answer = False
                if not _is_object(raw):
                    log.debug("dropped an answer that came after its run ended")
                    continue
            return raw


def _is_object(raw: str | bytes) -> bool:
    try:
        return isinstance(json.loads(raw), dict)
    except (ValueError, UnicodeDecodeError):
        return False


async def serve_execute_stream(ctx: ManagerContext, ref: str) -> None:
    target = await caller_target(ctx, ref)
    looked_up = trio.current_time()
    await websocket.accept()
    client = _Client()
    while True:
        raw = await client.next_run()
        try:
            if trio.current_time() - looked_up >= ACTIVITY_WRITE_INTERVAL:
                # Still running?  Also notes the session's activity.
                target = await caller_target(ctx, ref)
                looked_up = trio.current_time()
            mode, code, options = parse_first_message(raw)
            await _relay_run(ctx, target, client, mode, code, options)
        except APIError as e:
            await websocket.send(json.dumps({"status": "error", "msg": str(e)}))


async def _relay_run(
    ctx: ManagerContext,
    target: KernelTarget,
    client: _Client,
    mode: str,
    code: str,
    options: dict[str, Any],
) -> None:
    """One run, its results sent as they come; an error that ends it is raised (APIError)."""
    run_id = secrets.token_hex(8)
    execute = {
        "op": "execute",
        "kernel_id": target.kernel_id,
        "run_id": run_id,
        "mode": mode,
        "code": code,
        "options": options,
    }
    failure: BaseException | None = None
    ended_with: APIError | None = None
    try:
        async with (
            ctx.agents.exec.run(target.agent_addr, execute) as channel,
            trio.open_nursery() as nursery,
        ):
            run = _Run(run_id, channel, client)
            nursery.start_soon(run.from_client)
            ended_with = await run.to_client()
            nursery.cancel_scope.cancel()
    except* (RPCError, InvalidAPIParameters) as group:
        failure = group.exceptions[0]
    if isinstance(failure, RPCError):
        raise api_error(failure, f"executing in session {target.session_name!r}") from failure
    if isinstance(failure, APIError):
        raise failure
    if ended_with is not None:
        raise ended_with


class _Run:
    def __init__(self, run_id: str, channel: ExecChannel, client: _Client) -> None:
        self.run_id = run_id
        self.channel = channel
        self.client = client
        # A waiting-input went to the client, and no answer has been passed on yet.
        self.awaiting = False

    async def to_client(self) -> APIError | None:
        """Relay results until the run ends; the error it ended with, if any."""
        while True:
            results, error, ended = fold_frames(
                self.run_id, await self.channel.receive(self.run_id)
            )
            for result in results:
                if result["status"] == "waiting-input":
                    self.awaiting = True  # before the client can see it, and answer
                for message in split_result(result):
                    await websocket.send(json.dumps(message))
            if ended:
                self.channel.reusable = True
                self.client.late_answer = self.awaiting
                return error

    async def from_client(self) -> None:
        """Pass answers on while the run waits for one; keep anything else for later."""
        while True:
            raw = await websocket.receive()
            if self.awaiting:
                self.awaiting = False
                text = raw if isinstance(raw, str) else raw.decode(errors="replace")
                await self.channel.send({"op": "input", "data": text})
            elif len(self.client.early) < MAX_EARLY:
                self.client.early.append(raw)
            else:
                raise InvalidAPIParameters(
                    f"more than {MAX_EARLY} messages came during run {self.run_id} without "
                    "an input request; a run's first message waits until the run before ends"
                )
