"""Scheduler plugins by name: the built-ins, then Python entry points.

A third party adds a policy without touching this package by declaring an
entry point whose object is a class (instantiated with no arguments):

    [project.entry-points."backendai.sequencers"]        # Sequencer or one-shot scheduler
    [project.entry-points."backendai.agent_selectors"]   # AgentSelector
    [project.entry-points."backendai.validators"]        # Validator

A built-in name cannot be shadowed.  Unknown names are a ConfigError listing
the known ones.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import Any, cast

from ..errors import ConfigError
from .oneshot import OneShotAdapter, OneShotScheduler
from .pool import SimpleSelector
from .selectors import (
    ConcentratedSelector,
    DispersedSelector,
    FirstFitSelector,
    RoundRobinSelector,
)
from .sequencers import DRFSequencer, FairShareSequencer, FIFOSequencer, LIFOSequencer, Sequencer
from .validators import (
    ConcurrencyValidator,
    DependenciesValidator,
    PendingLimitValidator,
    QuotaValidator,
    StartsAtValidator,
    Validator,
)

__all__ = [
    "DEFAULT_VALIDATORS",
    "get_agent_selector",
    "get_sequencer",
    "get_validator",
    "known_agent_selectors",
    "known_sequencers",
    "known_validators",
]

_SEQUENCERS: Mapping[str, Callable[[], Any]] = {
    "fifo": FIFOSequencer,
    "lifo": LIFOSequencer,
    "drf": DRFSequencer,
    "fair-share": FairShareSequencer,
}
_SELECTORS: Mapping[str, Callable[[], Any]] = {
    "first-fit": FirstFitSelector,
    "concentrated": ConcentratedSelector,
    "dispersed": DispersedSelector,
    "roundrobin": RoundRobinSelector,
}
_VALIDATORS: Mapping[str, Callable[[], Any]] = {
    "starts-at": StartsAtValidator,
    "dependencies": DependenciesValidator,
    "concurrency": ConcurrencyValidator,
    "pending-limit": PendingLimitValidator,
    "quota": QuotaValidator,
}
# Run when a resource group does not list its own, in this order.
DEFAULT_VALIDATORS = tuple(_VALIDATORS)

_GROUPS = {
    "sequencer": "backendai.sequencers",
    "agent selector": "backendai.agent_selectors",
    "validator": "backendai.validators",
}


def _known(kind: str, builtin: Mapping[str, object]) -> list[str]:
    return sorted(set(builtin) | {ep.name for ep in entry_points(group=_GROUPS[kind])})


def _lookup(kind: str, builtin: Mapping[str, Callable[[], Any]], name: str) -> Any:
    if name in builtin:
        return builtin[name]()
    for ep in entry_points(group=_GROUPS[kind]):
        if ep.name == name:
            try:
                return ep.load()()
            except Exception as e:
                raise ConfigError(
                    f"{kind} {name!r} (entry point {ep.value} in {_GROUPS[kind]}) "
                    f"could not be loaded: {type(e).__name__}: {e}"
                ) from e
    raise ConfigError(f"unknown {kind} {name!r}; known: {', '.join(_known(kind, builtin))}")


def get_sequencer(name: str) -> Sequencer:
    """A sequencer; a one-shot scheduler plugin comes wrapped in its adapter."""
    obj = _lookup("sequencer", _SEQUENCERS, name)
    if not hasattr(obj, "queue") and isinstance(obj, OneShotScheduler):
        return OneShotAdapter(obj)
    return cast(Sequencer, obj)


def get_agent_selector(name: str) -> SimpleSelector:
    return cast(SimpleSelector, _lookup("agent selector", _SELECTORS, name))


def get_validator(name: str) -> Validator:
    return cast(Validator, _lookup("validator", _VALIDATORS, name))


def known_sequencers() -> list[str]:
    return _known("sequencer", _SEQUENCERS)


def known_agent_selectors() -> list[str]:
    return _known("agent selector", _SELECTORS)


def known_validators() -> list[str]:
    return _known("validator", _VALIDATORS)
