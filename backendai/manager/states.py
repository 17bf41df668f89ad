"""Session and kernel states, how a session's state follows from its kernels, and event names.

Pure: no I/O.  ``PENDING -> SCHEDULED -> PREPARING -> PULLING -> PREPARED ->
CREATING -> RUNNING -> TERMINATING -> TERMINATED``; ``CANCELLED`` only from
``PENDING``; ``ERROR`` with a reason.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "ERROR_REASONS",
    "LAUNCHING",
    "ORDER",
    "TERMINAL",
    "derive_session_status",
    "event_name",
    "final_kernel_status",
]

ORDER = (
    "PENDING",
    "SCHEDULED",
    "PREPARING",
    "PULLING",
    "PREPARED",
    "CREATING",
    "RUNNING",
    "TERMINATING",
)
TERMINAL = frozenset({"TERMINATED", "CANCELLED", "ERROR"})
LAUNCHING = ("SCHEDULED", "PREPARING", "PULLING", "PREPARED", "CREATING")
# A kernel that ends for one of these reasons ends in ERROR rather than TERMINATED.
ERROR_REASONS = frozenset(
    {
        "failed-to-start",
        "agent-lost",
        "image-not-found",
        "launch-timeout",
        # A pull that failed (manager/pulls.py maps the agent's reason to these).
        "image-auth-failed",
        "image-wrong-arch",
        "image-no-space",
        "image-pull-timeout",
        "image-pull-unsupported",
        "image-pull-failed",
    }
)

_EVENTS = {
    "PENDING": "enqueued",
    "SCHEDULED": "scheduled",
    "PREPARING": "preparing",
    "PULLING": "pulling",
    "PREPARED": "prepared",
    "CREATING": "creating",
    "RUNNING": "started",
    "TERMINATING": "terminating",
    "TERMINATED": "terminated",
    "CANCELLED": "cancelled",
    "ERROR": "failure",
}


def final_kernel_status(reason: str | None) -> str:
    return "ERROR" if reason in ERROR_REASONS else "TERMINATED"


def derive_session_status(kernel_statuses: Sequence[str]) -> str:
    """A session is RUNNING when all its kernels are, terminal when all are.

    While kernels differ, the session shows the least advanced live state, and
    TERMINATING as soon as any kernel is going away.
    """
    if not kernel_statuses:
        raise ValueError("a session has at least one kernel")
    states = set(kernel_statuses)
    unknown = states - TERMINAL - set(ORDER)
    if unknown:
        known = ", ".join((*ORDER, *sorted(TERMINAL)))
        raise ValueError(f"unknown kernel status {sorted(unknown)[0]!r}; known: {known}")
    if states <= TERMINAL:
        if "ERROR" in states:
            return "ERROR"
        if states == {"CANCELLED"}:
            return "CANCELLED"
        return "TERMINATED"
    if "TERMINATING" in states or states & TERMINAL:
        return "TERMINATING"
    return min(states, key=ORDER.index)


def event_name(scope: str, status: str) -> str:
    """``session_started`` for (session, RUNNING), ``kernel_terminated`` for ..."""
    return f"{scope}_{_EVENTS[status]}"
