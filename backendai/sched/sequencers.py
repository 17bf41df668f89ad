"""Sequencers: in which order a resource group's pending sessions are tried.

A sequencer makes a :class:`SessionQueue` for the sessions of one priority
(the planner serves priorities from the highest down); the planner asks it for
the next session, tries to place it, and tells it whether the session started
or was skipped, so policies that depend on what started (DRF, fair share)
re-rank as the pass goes.

* ``fifo``: oldest first.  ``lifo``: newest first.
* ``drf``: dominant resource fairness: the user (access key) with the lowest
  dominant share of the group's capacity goes next; their oldest session first.
* ``fair-share``: like ``drf``, ranked by decayed historical usage (see
  :mod:`.usage`) plus what the pass has started for the user.

Pure: no I/O.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from .model import AgentSnapshot, PendingSession, RunningSession
from .options import GroupOptions
from .slots import ResourceSlots
from .usage import dominant_share

__all__ = [
    "DRFSequencer",
    "FIFOSequencer",
    "FairShareSequencer",
    "LIFOSequencer",
    "QueueState",
    "Sequencer",
    "SessionQueue",
]


@dataclass
class QueueState:
    """What a sequencer may look at; the planner keeps it current during a pass."""

    now: float
    capacity: ResourceSlots  # the group's total
    usage: Mapping[str, ResourceSlots]  # access key -> live allocations in the group
    history: Mapping[str, float] = field(default_factory=dict)  # access key -> decayed share
    options: GroupOptions = field(default_factory=GroupOptions)
    running: Sequence[RunningSession] = ()
    agents: Callable[[], Sequence[AgentSnapshot]] = list


class SessionQueue(Protocol):
    def next(self) -> PendingSession | None:
        """The next session to try, or None when the queue is exhausted."""
        ...

    def started(self, session: PendingSession) -> None: ...

    def skipped(self, session: PendingSession) -> None: ...


class Sequencer(Protocol):
    name: str
    # True when the sequencer reads QueueState.history (the manager loads it only then).
    needs_history: bool

    def queue(self, sessions: Sequence[PendingSession], state: QueueState) -> SessionQueue:
        """*sessions* come oldest first (created_at, then id)."""
        ...


class _IterQueue:
    def __init__(self, it: Iterator[PendingSession]) -> None:
        self._it = it

    def next(self) -> PendingSession | None:
        return next(self._it, None)

    def started(self, session: PendingSession) -> None:
        pass

    def skipped(self, session: PendingSession) -> None:
        pass


class FIFOSequencer:
    name = "fifo"
    needs_history = False

    def queue(self, sessions: Sequence[PendingSession], state: QueueState) -> SessionQueue:
        return _IterQueue(iter(sessions))


class LIFOSequencer:
    name = "lifo"
    needs_history = False

    def queue(self, sessions: Sequence[PendingSession], state: QueueState) -> SessionQueue:
        return _IterQueue(reversed(sessions))


class _ShareQueue:
    """Users ranked by a share; each user's sessions oldest first.

    ``rank(user, started)`` gives a user's current key from the slots the pass
    has started for them; ties go to the user whose next session is oldest.
    """

    def __init__(
        self,
        sessions: Sequence[PendingSession],
        rank: Callable[[str, ResourceSlots], Any],
    ) -> None:
        self._rank = rank
        self._sessions: dict[str, deque[PendingSession]] = {}
        for s in sessions:
            self._sessions.setdefault(s.access_key, deque()).append(s)
        self._started: dict[str, ResourceSlots] = {}
        self._heap: list[tuple[Any, float, str, str]] = []
        for user in self._sessions:
            self._push(user)

    def _push(self, user: str) -> None:
        waiting = self._sessions[user]
        if waiting:
            key = self._rank(user, self._started.get(user, ResourceSlots()))
            head = waiting[0]
            heapq.heappush(self._heap, (key, head.created_at, head.id, user))

    def next(self) -> PendingSession | None:
        if not self._heap:
            return None
        user = heapq.heappop(self._heap)[3]
        return self._sessions[user].popleft()

    def started(self, session: PendingSession) -> None:
        user = session.access_key
        self._started[user] = self._started.get(user, ResourceSlots()) + session.slots
        self._push(user)

    def skipped(self, session: PendingSession) -> None:
        self._push(session.access_key)


class DRFSequencer:
    name = "drf"
    needs_history = False

    def queue(self, sessions: Sequence[PendingSession], state: QueueState) -> SessionQueue:
        usage, capacity = state.usage, state.capacity

        def rank(user: str, started: ResourceSlots) -> Decimal:
            return dominant_share(usage.get(user, ResourceSlots()) + started, capacity)

        return _ShareQueue(sessions, rank)


class FairShareSequencer:
    name = "fair-share"
    needs_history = True

    def queue(self, sessions: Sequence[PendingSession], state: QueueState) -> SessionQueue:
        history, capacity = state.history, state.capacity

        def rank(user: str, started: ResourceSlots) -> float:
            return history.get(user, 0.0) + float(dominant_share(started, capacity))

        return _ShareQueue(sessions, rank)
