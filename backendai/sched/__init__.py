"""Scheduling (Sokovan): resource slots and pluggable policies, pure; the manager's loop drives it.

``plan_group`` turns snapshots of one resource group (agents, pending and
running sessions) into decisions, using the group's sequencer, agent selector
and validators, looked up by name among the built-ins and entry points.
"""

from __future__ import annotations

from .engine import (
    Decision,
    GroupPlan,
    GroupSnapshot,
    Plugins,
    Preemption,
    pending_since,
    plan_group,
    resolve_plugins,
)
from .model import (
    AgentSnapshot,
    Dependency,
    KernelRequest,
    PendingSession,
    Placement,
    RunningSession,
)
from .oneshot import OneShotAdapter, OneShotScheduler
from .options import PREEMPTION_MODES, GroupOptions, KeypairLimits
from .placement import MODES, AgentSelector, place, place_session
from .pool import AgentPool
from .preemption import PreemptionPlan, plan_preemption
from .registry import (
    DEFAULT_VALIDATORS,
    get_agent_selector,
    get_sequencer,
    get_validator,
    known_agent_selectors,
    known_sequencers,
    known_validators,
)
from .selectors import (
    ConcentratedSelector,
    DispersedSelector,
    FirstFitSelector,
    RoundRobinSelector,
)
from .sequencers import (
    DRFSequencer,
    FairShareSequencer,
    FIFOSequencer,
    LIFOSequencer,
    QueueState,
    Sequencer,
    SessionQueue,
)
from .slots import KNOWN_SLOTS, ResourceSlots, format_amount, format_bytes, parse_bytes
from .usage import UsageInterval, decayed_shares, dominant_share
from .validators import ValidationContext, Validator, Verdict

__all__ = [
    "DEFAULT_VALIDATORS",
    "KNOWN_SLOTS",
    "MODES",
    "PREEMPTION_MODES",
    "AgentPool",
    "AgentSelector",
    "AgentSnapshot",
    "ConcentratedSelector",
    "DRFSequencer",
    "Decision",
    "Dependency",
    "DispersedSelector",
    "FIFOSequencer",
    "FairShareSequencer",
    "FirstFitSelector",
    "GroupOptions",
    "GroupPlan",
    "GroupSnapshot",
    "KernelRequest",
    "KeypairLimits",
    "LIFOSequencer",
    "OneShotAdapter",
    "OneShotScheduler",
    "PendingSession",
    "Placement",
    "Plugins",
    "Preemption",
    "PreemptionPlan",
    "QueueState",
    "ResourceSlots",
    "RoundRobinSelector",
    "RunningSession",
    "Sequencer",
    "SessionQueue",
    "UsageInterval",
    "ValidationContext",
    "Validator",
    "Verdict",
    "decayed_shares",
    "dominant_share",
    "format_amount",
    "format_bytes",
    "get_agent_selector",
    "get_sequencer",
    "get_validator",
    "known_agent_selectors",
    "known_sequencers",
    "known_validators",
    "parse_bytes",
    "pending_since",
    "place",
    "place_session",
    "plan_group",
    "plan_preemption",
    "resolve_plugins",
]
