"""The planner: one pass over one resource group, from snapshots to decisions.

For each pending session, in the order its priority and the group's sequencer
give, the planner runs the validators, then places the session (all kernels or
none) on the group's agents with the group's selector.  Each session gets one
:class:`Decision`: start (with its agents), wait (with the check that failed,
what was asked and what is free), or cancel (pending timeout, a dependency
that failed).  With head-of-line blocking on, a session that does not fit
holds back every later one; with preemption on, it may choose lower-priority
preemptible victims.  Pure: the manager reads the snapshots and writes the
decisions, each in its own transaction.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from .model import AgentSnapshot, PendingSession, RunningSession
from .oneshot import OneShotAdapter
from .options import GroupOptions, KeypairLimits
from .placement import place
from .pool import AgentPool, SimpleSelector
from .preemption import plan_preemption
from .registry import DEFAULT_VALIDATORS, get_agent_selector, get_sequencer, get_validator
from .sequencers import QueueState, Sequencer
from .slots import ResourceSlots
from .validators import ValidationContext, Validator, Verdict

__all__ = [
    "Decision",
    "GroupPlan",
    "GroupSnapshot",
    "Plugins",
    "Preemption",
    "plan_group",
    "resolve_plugins",
]


@dataclass(frozen=True)
class GroupSnapshot:
    name: str
    agents: Sequence[AgentSnapshot]
    pending: Sequence[PendingSession]
    running: Sequence[RunningSession] = ()
    options: GroupOptions = field(default_factory=GroupOptions)
    sequencer: str = "fifo"
    agent_selector: str = "first-fit"
    history: Mapping[str, float] = field(default_factory=dict)  # for fair-share
    last_agent: str | None = None  # the agent of the newest allocation (roundrobin)
    # access key -> limits; None: the group option keypair_limits for every keypair.
    limits: Callable[[str], KeypairLimits] | None = None


@dataclass(frozen=True)
class Plugins:
    sequencer: Sequencer
    selector: SimpleSelector
    validators: Sequence[Validator]


@dataclass(frozen=True)
class Decision:
    session: PendingSession
    action: str  # start | wait | cancel
    check: str = ""  # what held it back: a validator, resources, hol-blocking, preemption...
    detail: str = ""
    assignments: Mapping[str, str] = field(default_factory=dict)  # kernel id -> agent id


@dataclass(frozen=True)
class Preemption:
    victim: RunningSession
    by: PendingSession
    mode: str  # terminate | requeue


@dataclass
class GroupPlan:
    group: str
    decisions: list[Decision] = field(default_factory=list)
    preemptions: list[Preemption] = field(default_factory=list)

    @property
    def started(self) -> list[Decision]:
        return [d for d in self.decisions if d.action == "start"]


def resolve_plugins(g: GroupSnapshot) -> Plugins:
    """The group's plugins by name; a ConfigError names the one that is unknown."""
    sequencer = get_sequencer(g.sequencer)
    selector = (
        sequencer.selector
        if isinstance(sequencer, OneShotAdapter)
        else get_agent_selector(g.agent_selector)
    )
    names = DEFAULT_VALIDATORS if g.options.validators is None else g.options.validators
    return Plugins(sequencer, selector, [get_validator(n) for n in names])


def pending_since(s: PendingSession) -> float | None:
    """When the pending timeout starts counting: None while dependencies still run."""
    since = max(s.created_at, s.starts_at or 0.0)
    for d in s.dependencies:
        if not (d.succeeded or d.failed):
            return None
        since = max(since, d.terminated_at or 0.0)
    return since


def plan_group(
    g: GroupSnapshot, plugins: Plugins, now: float, pending_timeout: float = 0.0
) -> GroupPlan:
    """Decide every pending session of *g*; *pending_timeout* 0 disables the timeout."""
    return _Planner(g, plugins, now, pending_timeout).run()


class _Planner:
    def __init__(
        self, g: GroupSnapshot, plugins: Plugins, now: float, pending_timeout: float
    ) -> None:
        self.g = g
        self.plugins = plugins
        self.now = now
        self.timeout = (
            g.options.pending_timeout if g.options.pending_timeout is not None else pending_timeout
        )
        self.pool = AgentPool(g.agents, plugins.selector, last_agent=g.last_agent)
        self.plan = GroupPlan(g.name)
        self.running = list(g.running)
        self.capacity = ResourceSlots()
        for a in g.agents:
            self.capacity = self.capacity + a.capacity
        self.usage: dict[str, ResourceSlots] = defaultdict(ResourceSlots)
        live: dict[str, int] = defaultdict(int)
        for r in g.running:
            self.usage[r.access_key] = self.usage[r.access_key] + r.slots
            if r.status != "TERMINATING":
                live[r.access_key] += 1
        ranks: dict[str, int] = {}
        counts: dict[str, int] = defaultdict(int)
        for s in sorted(g.pending, key=lambda s: (s.created_at, s.id)):
            ranks[s.id] = counts[s.access_key]
            counts[s.access_key] += 1
        limits = g.limits or (lambda _key: g.options.keypair_limits)
        self.live = live
        self.vctx = ValidationContext(now, g.name, limits, live, self.usage, ranks, counts)
        self.blocked_by: PendingSession | None = None
        self.spared: set[str] = set()

    def run(self) -> GroupPlan:
        alive = [s for s in self.g.pending if not self._timed_out(s)]
        bands: dict[int, list[PendingSession]] = defaultdict(list)
        for s in alive:
            bands[s.priority].append(s)
        for priority in sorted(bands, reverse=True):
            band = sorted(bands[priority], key=lambda s: (s.created_at, s.id))
            state = QueueState(
                now=self.now,
                capacity=self.capacity,
                usage=dict(self.usage),
                history=self.g.history,
                options=self.g.options,
                running=self.running,
                agents=self.pool.snapshots,
            )
            queue = self.plugins.sequencer.queue(band, state)
            while (nxt := queue.next()) is not None:
                if self._try(nxt):
                    queue.started(nxt)
                else:
                    queue.skipped(nxt)
        return self.plan

    def _decide(self, s: PendingSession, action: str, check: str, detail: str) -> None:
        self.plan.decisions.append(Decision(s, action, check, detail))

    def _timed_out(self, s: PendingSession) -> bool:
        since = pending_since(s)
        if self.timeout <= 0 or since is None or self.now - since <= self.timeout:
            return False
        self._decide(
            s,
            "cancel",
            "pending-timeout",
            f"pending for {self.now - since:.0f} s, over the pending timeout of "
            f"{self.timeout:.0f} s",
        )
        return True

    def _verdict(self, s: PendingSession) -> Verdict | None:
        for v in self.plugins.validators:
            verdict = v.check(s, self.vctx)
            if verdict is not None:
                return verdict
        return None

    def _try(self, s: PendingSession) -> bool:
        verdict = self._verdict(s)
        if verdict is not None:
            self._decide(s, "cancel" if verdict.final else "wait", verdict.check, verdict.detail)
            return False
        if self.blocked_by is not None:
            b = self.blocked_by
            self._decide(
                s,
                "wait",
                "hol-blocking",
                f"waiting behind session {b.name} ({b.id}), which does not fit yet "
                f"(head-of-line blocking is on in resource group {self.g.name!r})",
            )
            return False
        placement = place(self.pool, s.kernels, s.cluster_mode)
        if placement.ok:
            self._started(s, placement.assignments)
            return True
        check, detail = "resources", placement.reason
        if self.g.options.preemption != "off":
            pre = plan_preemption(self.pool, s, self.running, self.spared)
            if pre is not None:
                check, detail = "preemption", f"{pre.detail}; now: {placement.reason}"
                for victim in pre.victims:
                    self.spared.add(victim.id)
                    self.plan.preemptions.append(Preemption(victim, s, self.g.options.preemption))
        self._decide(s, "wait", check, detail)
        if self.g.options.hol_blocking:
            self.blocked_by = s
        return False

    def _started(self, s: PendingSession, assignments: Mapping[str, str]) -> None:
        self.plan.decisions.append(Decision(s, "start", assignments=dict(assignments)))
        key = s.access_key
        self.usage[key] = self.usage[key] + s.slots
        self.live[key] += 1
        self.running.append(
            RunningSession(
                s.id,
                key,
                s.resource_group,
                s.priority,
                s.preemptible,
                "SCHEDULED",
                self.now,
                tuple((assignments[k.kernel_id], k.slots) for k in s.kernels),
            )
        )
