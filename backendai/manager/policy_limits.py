"""Keypair resource policies as the scheduler's per-group limits.

A policy limits a keypair across every resource group, while the scheduler's
validators count within one group.  So the limit a group sees is the policy's
less what the keypair holds (or has waiting) in the other groups, and the
tighter of that and the group's own ``keypair_limits`` option.  Pure.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from ..sched import KeypairLimits, PendingSession, ResourceSlots, RunningSession

__all__ = ["Held", "group_limits", "held_by_group"]


@dataclass
class Held:
    """What one keypair has in one resource group."""

    live: int = 0
    pending: int = 0
    slots: ResourceSlots = field(default_factory=ResourceSlots)


def held_by_group(
    running: Mapping[str, Iterable[RunningSession]], pending: Iterable[PendingSession]
) -> dict[str, dict[str, Held]]:
    """access key -> resource group -> what it has there."""
    out: dict[str, dict[str, Held]] = defaultdict(lambda: defaultdict(Held))
    for group, sessions in running.items():
        for r in sessions:
            h = out[r.access_key][group]
            h.slots = h.slots + r.slots
            if r.status != "TERMINATING":
                h.live += 1
    for s in pending:
        out[s.access_key][s.resource_group].pending += 1
    return out


def _min(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def _tighter(group: KeypairLimits, policy: KeypairLimits, elsewhere: Held) -> KeypairLimits:
    quota: dict[str, Decimal] | None = None
    if policy.total_resource_slots is not None or group.total_resource_slots is not None:
        quota = dict(group.total_resource_slots or {})
        for slot, most in (policy.total_resource_slots or {}).items():
            left = max(most - elsewhere.slots[slot], Decimal(0))
            quota[slot] = min(quota.get(slot, left), left)

    def remaining(most: int | None, used: int) -> int | None:
        return None if most is None else max(most - used, 0)

    source = policy.source
    if elsewhere.live or elsewhere.pending or any(elsewhere.slots.values()):
        source += (
            f", less {elsewhere.live} sessions, {elsewhere.pending} pending and "
            f"{elsewhere.slots.human()} in other resource groups"
        )
    if group.source:
        source += f"; and {group.source}"
    return KeypairLimits(
        max_concurrent_sessions=_min(
            group.max_concurrent_sessions, remaining(policy.max_concurrent_sessions, elsewhere.live)
        ),
        max_pending_sessions=_min(
            group.max_pending_sessions, remaining(policy.max_pending_sessions, elsewhere.pending)
        ),
        total_resource_slots=quota,
        source=source,
    )


def group_limits(
    group: str,
    group_option: KeypairLimits,
    policies: Mapping[str, KeypairLimits],
    held: Mapping[str, Mapping[str, Held]],
) -> Callable[[str], KeypairLimits]:
    """The limits function the scheduler's validators use in *group*."""

    def limits(access_key: str) -> KeypairLimits:
        policy = policies.get(access_key)
        if policy is None or policy == KeypairLimits(source=policy.source):
            return group_option  # no policy, or one that limits nothing
        elsewhere = Held()
        for name, h in held.get(access_key, {}).items():
            if name != group:
                elsewhere.live += h.live
                elsewhere.pending += h.pending
                elsewhere.slots = elsewhere.slots + h.slots
        return _tighter(group_option, policy, elsewhere)

    return limits
