"""Session and kernel states (backendai.manager.states): derivation, event names, final states."""

from __future__ import annotations

import pytest

from backendai.manager.states import (
    ERROR_REASONS,
    LAUNCHING,
    ORDER,
    TERMINAL,
    derive_session_status,
    event_name,
    final_kernel_status,
)


@pytest.mark.parametrize(
    ("kernels", "session"),
    [
        # One kernel: the session shows its state.
        *(([s], s) for s in (*ORDER, *sorted(TERMINAL))),
        # RUNNING only when every kernel is.
        (["RUNNING", "RUNNING", "RUNNING"], "RUNNING"),
        (["RUNNING", "CREATING"], "CREATING"),
        (["RUNNING", "PENDING"], "PENDING"),
        # While launching, the least advanced live state.
        (["SCHEDULED", "PULLING", "CREATING"], "SCHEDULED"),
        (["PULLING", "PREPARING"], "PREPARING"),
        (["PREPARED", "PULLING"], "PULLING"),
        (["CREATING", "PREPARED"], "PREPARED"),
        # TERMINATING as soon as any kernel is going away or gone.
        (["RUNNING", "TERMINATING"], "TERMINATING"),
        (["CREATING", "TERMINATING"], "TERMINATING"),
        (["RUNNING", "TERMINATED"], "TERMINATING"),
        (["RUNNING", "ERROR"], "TERMINATING"),
        (["PULLING", "ERROR"], "TERMINATING"),
        (["TERMINATING", "TERMINATED"], "TERMINATING"),
        (["TERMINATING", "ERROR"], "TERMINATING"),
        # Terminal when all are: ERROR wins, CANCELLED only when all were cancelled.
        (["TERMINATED", "TERMINATED"], "TERMINATED"),
        (["TERMINATED", "ERROR"], "ERROR"),
        (["ERROR", "ERROR"], "ERROR"),
        (["CANCELLED", "CANCELLED"], "CANCELLED"),
        (["CANCELLED", "TERMINATED"], "TERMINATED"),
        (["CANCELLED", "ERROR"], "ERROR"),
        (["CANCELLED", "TERMINATED", "ERROR"], "ERROR"),
    ],
)
def test_derive_session_status(kernels: list[str], session: str) -> None:
    assert derive_session_status(kernels) == session
    assert derive_session_status(list(reversed(kernels))) == session


def test_a_session_without_kernels_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one kernel"):
        derive_session_status([])


@pytest.mark.parametrize("bad", ["BOGUS", "running", ""])
def test_an_unknown_kernel_status_is_named(bad: str) -> None:
    with pytest.raises(ValueError, match=rf"unknown kernel status {bad!r}; known: PENDING, "):
        derive_session_status(["RUNNING", bad])


def test_state_sets_are_consistent() -> None:
    assert set(LAUNCHING) < set(ORDER)
    assert ORDER.index("PENDING") < min(map(ORDER.index, LAUNCHING))
    assert max(map(ORDER.index, LAUNCHING)) < ORDER.index("RUNNING")
    assert not TERMINAL & set(ORDER)


@pytest.mark.parametrize(
    ("scope", "status", "name"),
    [
        ("session", "PENDING", "session_enqueued"),
        ("session", "SCHEDULED", "session_scheduled"),
        ("session", "PREPARING", "session_preparing"),
        ("session", "PULLING", "session_pulling"),
        ("session", "RUNNING", "session_started"),
        ("session", "TERMINATING", "session_terminating"),
        ("session", "TERMINATED", "session_terminated"),
        ("session", "CANCELLED", "session_cancelled"),
        ("session", "ERROR", "session_failure"),
        ("kernel", "PREPARED", "kernel_prepared"),
        ("kernel", "CREATING", "kernel_creating"),
        ("kernel", "RUNNING", "kernel_started"),
        ("kernel", "TERMINATED", "kernel_terminated"),
        ("kernel", "ERROR", "kernel_failure"),
    ],
)
def test_event_name(scope: str, status: str, name: str) -> None:
    assert event_name(scope, status) == name


def test_every_status_has_an_event_name() -> None:
    for status in (*ORDER, *TERMINAL):
        assert event_name("session", status).startswith("session_")


@pytest.mark.parametrize(
    ("reason", "status"),
    [
        *((r, "ERROR") for r in sorted(ERROR_REASONS)),
        ("failed-to-start", "ERROR"),
        ("agent-lost", "ERROR"),
        ("user-requested", "TERMINATED"),
        ("force-terminated", "TERMINATED"),
        ("idle-timeout", "TERMINATED"),
        ("exec-timeout", "TERMINATED"),
        ("pending-timeout", "TERMINATED"),
        ("", "TERMINATED"),
        (None, "TERMINATED"),
    ],
)
def test_final_kernel_status(reason: str | None, status: str) -> None:
    assert final_kernel_status(reason) == status
