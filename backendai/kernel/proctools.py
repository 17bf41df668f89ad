"""Process helpers for the runner: exit codes, process groups, the OOM killer's traces."""

from __future__ import annotations

import contextlib
import os
import signal
import time

# cgroup v2, then v1: where the kernel counts the processes its OOM killer killed.
_OOM_FILES = ("/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control")
_LIMIT_FILES = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


def exit_code(returncode: int) -> int:
    """A shell-style exit code: 128+N for a process killed by signal N."""
    return 128 - returncode if returncode < 0 else returncode


def signal_group(pgid: int, signum: int) -> bool:
    """Send *signum* to process group *pgid*; False when the group is gone."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    return True


def group_members(pgid: int) -> list[int]:
    """Pids in process group *pgid* (from /proc; empty where /proc is unreadable)."""
    members = []
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # After the command: state, ppid, pgrp, ...; zombies are already dead.
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] != b"Z":
            members.append(pid)
    return members


def kill_group(pgid: int, *, spare: int | None = None, rounds: int = 100) -> None:
    """SIGKILL every process of group *pgid* (except *spare*) until none is left.

    With a *spare*, the group is stopped first so that nothing in it can fork while its
    members are listed and killed (a fork bomb cannot outrun us); the spare continues after.
    """
    for _ in range(rounds):
        if spare is None:
            signal_group(pgid, signal.SIGKILL)  # one call for the group: forks in flight too
            if not group_members(pgid):
                return
        else:
            signal_group(pgid, signal.SIGSTOP)
            members = [p for p in group_members(pgid) if p != spare]
            for pid in members:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                os.kill(spare, signal.SIGCONT)
            if not members:
                return
        time.sleep(0.01)


# Prefix of a shell command that makes it (and all it starts) the OOM killer's first
# choice rather than the runner: ``sh -c OOM_FIRST_SH sh COMMAND``.
OOM_FIRST_SH = 'echo 1000 >/proc/self/oom_score_adj 2>/dev/null; exec /bin/sh -c "$1"'


def prefer_for_oom() -> None:
    """Make this process (and what it forks later) the OOM killer's first choice.

    Called by a child before it runs user code, so nothing escapes it; raising one's
    own score needs no privilege.
    """
    try:
        fd = os.open("/proc/self/oom_score_adj", os.O_WRONLY)
    except OSError:
        return
    with contextlib.suppress(OSError):
        os.write(fd, b"1000")
    os.close(fd)


def oom_kills() -> int | None:
    """How many processes the OOM killer killed in our memory cgroup, where readable."""
    for path in _OOM_FILES:
        try:
            with open(path) as f:
                for line in f:
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
        except (OSError, ValueError):
            continue
    return None


def memory_limit() -> int | None:
    for path in _LIMIT_FILES:
        try:
            with open(path) as f:
                text = f.read().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:
            return int(text)
    return None


def oom_note(oom_before: int | None) -> str | None:
    """A note when the OOM killer killed something since *oom_before* was read."""
    after = oom_kills()
    if oom_before is None or after is None or after <= oom_before:
        return None
    limit = memory_limit()
    shown = f" of {limit // (1024 * 1024)} MiB" if limit else ""
    return f"was killed by the out-of-memory killer (memory limit{shown} reached)"


def death_note(returncode: int, oom_before: int | None) -> str:
    """Why a process ended, for the console: signals named, the OOM killer recognised."""
    if returncode >= 0:
        return f"exited with code {returncode}"
    signum = -returncode
    if signum == signal.SIGKILL and (note := oom_note(oom_before)) is not None:
        return note
    try:
        return f"was killed by {signal.Signals(signum).name}"
    except ValueError:
        return f"was killed by signal {signum}"
