"""The seed's one-shot scheduler form, as a plugin.

A one-shot scheduler sees the running sessions, the pending queue and the
agents with their current usage, and answers with one session to start and
the agent (or, per kernel, the agents) for it; or None.  Registered as a
sequencer (``backendai.sequencers`` entry point), it is wrapped in
:class:`OneShotAdapter`, which asks it again after every placement with the
state updated.  Its choice is checked like any other: a pick that does not fit,
or that a validator refuses, is skipped with the reason recorded, and the
plugin is asked again without that session.  Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

from .model import AgentSnapshot, KernelRequest, PendingSession, RunningSession
from .sequencers import QueueState, SessionQueue

__all__ = ["OneShotAdapter", "OneShotScheduler"]


@runtime_checkable
class OneShotScheduler(Protocol):
    name: str

    def pick(
        self,
        running: Sequence[RunningSession],
        pending: Sequence[PendingSession],
        agents: Sequence[AgentSnapshot],
    ) -> tuple[str, str | Mapping[str, str]] | None:
        """``(session id, agent id)`` or ``(session id, {kernel id: agent id})``, or None."""
        ...


class OneShotAdapter:
    """A one-shot scheduler as a sequencer; ``selector`` places where it picked."""

    needs_history = False

    def __init__(self, plugin: OneShotScheduler) -> None:
        self.name = plugin.name
        self.plugin = plugin
        self.chosen: dict[str, str] = {}  # kernel id -> agent id, for the session handed out
        self.selector = _PickedAgent(self)

    def queue(self, sessions: Sequence[PendingSession], state: QueueState) -> SessionQueue:
        return _OneShotQueue(self, sessions, state)


class _OneShotQueue:
    def __init__(
        self, adapter: OneShotAdapter, sessions: Sequence[PendingSession], state: QueueState
    ) -> None:
        self._adapter = adapter
        self._pending = {s.id: s for s in sessions}
        self._state = state

    def next(self) -> PendingSession | None:
        if not self._pending:
            return None
        state = self._state
        pick = self._adapter.plugin.pick(
            state.running, list(self._pending.values()), state.agents()
        )
        if pick is None:
            return None
        session_id, where = pick
        session = self._pending.pop(session_id, None)
        if session is None:
            return None  # not one of the sessions offered: the plugin has nothing valid to start
        self._adapter.chosen = {
            k.kernel_id: where if isinstance(where, str) else where.get(k.kernel_id, "")
            for k in session.kernels
        }
        return session

    def started(self, session: PendingSession) -> None:
        pass

    def skipped(self, session: PendingSession) -> None:
        pass


class _PickedAgent:
    def __init__(self, adapter: OneShotAdapter) -> None:
        self.name = f"{adapter.name} (one-shot)"
        self._adapter = adapter

    def select(self, request: KernelRequest, candidates: Sequence[AgentSnapshot]) -> str | None:
        wanted = self._adapter.chosen.get(request.kernel_id)
        return wanted if any(a.id == wanted for a in candidates) else None
