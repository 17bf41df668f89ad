"""The scheduling loop (Sokovan): PENDING sessions get agents and allocation rows.

One pass: requeue preempted sessions that ended; read a snapshot of every
resource group with pending sessions (``sched_snapshot``); plan each group with
its sequencer, agent selector and validators (``backendai.sched``, pure); then
write the plan (``sched_commit``): starts in chunks of ``schedule_chunk``
sessions, each chunk one transaction that locks the agents it uses and checks
the placements against occupancy derived from live allocation rows, so two
managers never double-allocate; then cancellations, preemptions and the
decision trace of the sessions that wait.

The whole pass runs on one worker thread and holds one database slot, so a
tick never blocks the event loop; between chunks the database is free for the
API and the pass notices cancellation.  The loop wakes on hints (a session
enqueued, resources freed, a heartbeat) and every ``reconcile_interval``.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NoReturn, Protocol, TypeVar

import sqlalchemy as sa
import trio

from ..errors import BackendAIError
from ..sched import (
    Decision,
    GroupPlan,
    GroupSnapshot,
    Preemption,
    plan_group,
    resolve_plugins,
)
from .context import ManagerContext, publish_changes
from .repo import StatusChange
from .sched_commit import (
    commit_cancels,
    commit_preemptions,
    commit_starts,
    commit_waits,
    preempted_to_requeue,
    requeue_preempted,
)
from .sched_snapshot import load_snapshot

__all__ = ["PassResult", "run_pass", "serve_scheduler"]

log = logging.getLogger(__name__)
T = TypeVar("T")


class RunTx(Protocol):
    """Runs a unit of work in one transaction and returns its result (``Database.run_sync``)."""

    def __call__(self, fn: Callable[[sa.Connection], T], /) -> T: ...


# On SQLite a pass pauses after each transaction for this fraction of its length, so
# API writes waiting on the database lock get in between chunks.
SQLITE_PAUSE = 0.5


@dataclass
class PassResult:
    pending: int = 0
    started: int = 0
    refused: int = 0  # planned starts another writer made impossible: retried at once
    waiting: int = 0
    cancelled: int = 0
    preempted: int = 0
    plan_seconds: float = 0.0
    seconds: float = 0.0
    changes: list[StatusChange | None] = field(default_factory=list)


def _plan(
    snap_groups: Sequence[GroupSnapshot], now: float, pending_timeout: float
) -> tuple[list[GroupPlan], list[Decision], dict[str, str]]:
    plans: list[GroupPlan] = []
    stalled: list[Decision] = []
    how: dict[str, str] = {}
    for g in snap_groups:
        how[g.name] = (
            f"resource group {g.name}, sequencer {g.sequencer}, selector {g.agent_selector}"
        )
        try:
            plugins = resolve_plugins(g)
            plans.append(plan_group(g, plugins, now, pending_timeout))
        except Exception as e:  # a broken plugin stalls its group, not the loop
            if not isinstance(e, BackendAIError):
                log.exception("scheduling resource group %s failed in a plugin", g.name)
            why = f"resource group {g.name!r} cannot schedule: {type(e).__name__}: {e}"
            stalled += [Decision(s, "wait", "resource-group", why) for s in g.pending]
    return plans, stalled, how


def run_pass(
    run: RunTx,
    now: float,
    *,
    pending_timeout: float,
    chunk: int,
    on_changes: Callable[[list[StatusChange | None]], None] = lambda _changes: None,
    between_chunks: Callable[[], None] = lambda: None,
    pause: float = 0.0,
    read: RunTx | None = None,
) -> PassResult:
    """One scheduling pass; *run* runs a unit of work in one transaction (``Database.run_sync``).

    *on_changes* gets the status changes of each committed chunk; *between_chunks*
    runs between transactions (the loop checks for cancellation there).  *pause*:
    after each write, sleep this fraction of its duration (at most 0.1 s), so that
    on SQLite, where a writer locks the whole database, other writers get their turn.
    *read* runs the read-only snapshot (``run_sync(..., read_only=True)``); default *run*.
    """
    t0 = time.perf_counter()
    chunk = max(1, chunk)
    result = PassResult()
    read = read or run

    def write(fn: Callable[[sa.Connection], T]) -> T:
        started = time.perf_counter()
        try:
            return run(fn)
        finally:
            if pause > 0:
                time.sleep(min(0.1, (time.perf_counter() - started) * pause))

    ended = read(preempted_to_requeue)
    if ended:
        requeued: list[StatusChange | None] = list(
            write(lambda c: requeue_preempted(c, ended, now))
        )
        on_changes(requeued)
        result.changes += requeued
    snap = read(lambda c: load_snapshot(c, now))
    result.pending = snap.pending_count
    if not result.pending:
        result.seconds = time.perf_counter() - t0
        return result
    t_plan = time.perf_counter()
    plans, stalled, how = _plan(snap.groups, now, pending_timeout)
    result.plan_seconds = time.perf_counter() - t_plan
    decisions = [d for p in plans for d in p.decisions] + snap.stalled + stalled
    starts = [d for d in decisions if d.action == "start"]
    for i in range(0, len(starts), chunk):
        between_chunks()
        part = starts[i : i + chunk]
        by_group: dict[str, list[Decision]] = {}
        for d in part:
            by_group.setdefault(d.session.resource_group, []).append(d)
        for group, ds in by_group.items():

            def _starts(
                c: sa.Connection, ds: list[Decision] = ds, group: str = group
            ) -> tuple[list[StatusChange], list[Decision]]:
                return commit_starts(c, ds, now, snap.cluster_size, how[group])

            changes, refused = write(_starts)
            result.started += len(ds) - len(refused)
            result.refused += len(refused)
            on_changes(list(changes))
            result.changes += changes
    between_chunks()
    cancels = [d for d in decisions if d.action == "cancel"]
    preemptions: list[Preemption] = [p for plan in plans for p in plan.preemptions]
    for i in range(0, max(len(cancels), len(preemptions)), chunk):
        between_chunks()

        def _ends(
            c: sa.Connection,
            cs: list[Decision] = cancels[i : i + chunk],
            ps: list[Preemption] = preemptions[i : i + chunk],
        ) -> list[StatusChange | None]:
            return commit_cancels(c, cs, now) + commit_preemptions(c, ps, now)

        gone = write(_ends)
        on_changes(gone)
        result.changes += gone
    result.cancelled, result.preempted = len(cancels), len(preemptions)
    waits = [d for d in decisions if d.action == "wait"]
    result.waiting = len(waits)
    for i in range(0, len(waits), chunk * 4):
        between_chunks()
        part = waits[i : i + chunk * 4]

        def _waits(c: sa.Connection, part: list[Decision] = part) -> None:
            commit_waits(c, part, snap.last_record, now)

        write(_waits)
    result.seconds = time.perf_counter() - t0
    return result


async def serve_scheduler(
    ctx: ManagerContext, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> NoReturn:
    cfg = ctx.config.manager

    async def publish(changes: list[StatusChange | None]) -> None:
        await publish_changes(ctx, changes)
        if any(c is not None and c.new == "SCHEDULED" for c in changes):
            ctx.launch.set()

    def on_changes(changes: list[StatusChange | None]) -> None:
        if changes:
            trio.from_thread.run(publish, changes)

    def one_pass() -> PassResult:
        return run_pass(
            ctx.db.run_sync,
            time.time(),
            pending_timeout=cfg.pending_timeout,
            chunk=cfg.schedule_chunk,
            on_changes=on_changes,
            between_chunks=trio.from_thread.check_cancelled,
            pause=SQLITE_PAUSE if ctx.db.dialect == "sqlite" else 0.0,
            read=functools.partial(ctx.db.run_sync, read_only=True),
        )

    task_status.started()
    while True:
        try:
            result = await trio.to_thread.run_sync(one_pass, limiter=ctx.db.limiter)
        except Exception:
            log.exception("scheduling pass failed; retrying in %.1f s", cfg.reconcile_interval)
            result = PassResult()
        if result.started or result.refused or result.cancelled or result.preempted:
            log.info(
                "scheduling pass: %d pending, %d started, %d waiting, %d cancelled, "
                "%d preempted, %d refused at commit (%.3f s, planning %.3f s)",
                result.pending,
                result.started,
                result.waiting,
                result.cancelled,
                result.preempted,
                result.refused,
                result.seconds,
                result.plan_seconds,
            )
        # Another manager took what we planned on: plan again soon, from fresh state.
        await ctx.schedule.wait(0.05 if result.refused else cfg.reconcile_interval)
