"""Validators: may this pending session start now, apart from finding room for it?

Each returns None (yes) or a :class:`Verdict` naming the check and saying
what was asked and what is allowed.  A final verdict (a dependency that failed)
means the session can never start: the manager cancels it.  Limits come from a
small interface (``ValidationContext.limits``: access key -> :class:`KeypairLimits`);
today the manager reads them from the resource group's options and each
message names that source.  Pure: no I/O.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from .model import PendingSession
from .options import KeypairLimits
from .slots import ResourceSlots, format_amount

__all__ = [
    "ConcurrencyValidator",
    "DependenciesValidator",
    "PendingLimitValidator",
    "QuotaValidator",
    "StartsAtValidator",
    "ValidationContext",
    "Validator",
    "Verdict",
]


@dataclass(frozen=True)
class Verdict:
    check: str
    detail: str
    final: bool = False


@dataclass
class ValidationContext:
    now: float
    group: str
    limits: Callable[[str], KeypairLimits] = lambda _key: KeypairLimits()
    # access key -> sessions holding resources in the group (not terminating), incl. this pass
    live_sessions: Mapping[str, int] = field(default_factory=dict)
    # access key -> slots held in the group, incl. sessions started in this pass
    live_slots: Mapping[str, ResourceSlots] = field(default_factory=dict)
    # session id -> its place (0 = oldest) among its keypair's pending sessions in the group
    pending_rank: Mapping[str, int] = field(default_factory=dict)
    # access key -> pending sessions in the group
    pending_count: Mapping[str, int] = field(default_factory=dict)


class Validator(Protocol):
    name: str

    def check(self, session: PendingSession, ctx: ValidationContext) -> Verdict | None: ...


def _when(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="seconds")


class StartsAtValidator:
    name = "starts-at"

    def check(self, session: PendingSession, ctx: ValidationContext) -> Verdict | None:
        if session.starts_at is None or ctx.now >= session.starts_at:
            return None
        return Verdict(
            self.name,
            f"batch session is to start at {_when(session.starts_at)} "
            f"(in {session.starts_at - ctx.now:.0f} s)",
        )


class DependenciesValidator:
    name = "dependencies"

    def check(self, session: PendingSession, ctx: ValidationContext) -> Verdict | None:
        failed = [d for d in session.dependencies if d.failed]
        if failed:
            d = failed[0]
            code = "" if d.exit_code is None else f" with exit code {d.exit_code}"
            return Verdict(
                self.name,
                f"dependency {d.name} ({d.session_id}) ended {d.status}{code}; "
                "this session needs it to finish successfully, so it cannot start",
                final=True,
            )
        waiting = [d for d in session.dependencies if not d.succeeded]
        if not waiting:
            return None
        shown = ", ".join(f"{d.name} ({d.status})" for d in waiting)
        return Verdict(self.name, f"waiting for {len(waiting)} dependencies to finish: {shown}")


class ConcurrencyValidator:
    name = "concurrency"

    def check(self, session: PendingSession, ctx: ValidationContext) -> Verdict | None:
        limits = ctx.limits(session.access_key)
        limit = limits.max_concurrent_sessions
        live = ctx.live_sessions.get(session.access_key, 0)
        if limit is None or live < limit:
            return None
        return Verdict(
            self.name,
            f"keypair {session.access_key} has {live} of at most {limit} concurrent sessions "
            f"in resource group {ctx.group!r} (limit from {limits.source})",
        )


class PendingLimitValidator:
    """Only a keypair's oldest ``max_pending_sessions`` pending sessions are considered."""

    name = "pending-limit"

    def check(self, session: PendingSession, ctx: ValidationContext) -> Verdict | None:
        limits = ctx.limits(session.access_key)
        limit = limits.max_pending_sessions
        rank = ctx.pending_rank.get(session.id, 0)
        if limit is None or rank < limit:
            return None
        count = ctx.pending_count.get(session.access_key, rank + 1)
        return Verdict(
            self.name,
            f"keypair {session.access_key} has {count} pending sessions in resource group "
            f"{ctx.group!r}; only the {limit} oldest are scheduled (limit from {limits.source})",
        )


class QuotaValidator:
    """The keypair's total held slots stay within ``total_resource_slots``.

    A slot the quota does not name is not limited.
    """

    name = "quota"

    def check(self, session: PendingSession, ctx: ValidationContext) -> Verdict | None:
        limits = ctx.limits(session.access_key)
        quota = limits.total_resource_slots
        if quota is None:
            return None
        held = ctx.live_slots.get(session.access_key, ResourceSlots())
        after = held + session.slots
        over = sorted(s for s, limit in quota.items() if after[s] > limit)
        if not over:
            return None
        shown = " ".join(f"{s}={format_amount(s, v)}" for s, v in sorted(quota.items()))
        return Verdict(
            self.name,
            f"keypair {session.access_key} holds {held.human()} in resource group {ctx.group!r}; "
            f"with {session.slots.human()} more it would exceed its quota {shown} on "
            f"{', '.join(over)} (limit from {limits.source})",
        )
