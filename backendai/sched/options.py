"""The scheduling options of a resource group (its ``options`` JSON), checked.

    {
      "hol_blocking": false,            # a head session that does not fit holds back the rest
      "preemption": "off",              # off | terminate | requeue
      "validators": null,               # names to run; null: every built-in
      "fair_share_half_life": 86400,    # seconds; the decay of historical usage
      "pending_timeout": null,          # seconds; null: the manager's pending_timeout
      "keypair_limits": {               # per keypair, counted within this group
        "max_concurrent_sessions": null,
        "max_pending_sessions": null,
        "total_resource_slots": null    # e.g. {"cpu": 8, "mem": "32g"}
      }
    }

Unknown keys and bad values are refused with the key, the value and what was
expected.  Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ..errors import InvalidAPIParameters
from .slots import KNOWN_SLOTS, ResourceSlots

__all__ = ["PREEMPTION_MODES", "GroupOptions", "KeypairLimits"]

PREEMPTION_MODES = ("off", "terminate", "requeue")


@dataclass(frozen=True)
class KeypairLimits:
    """What one keypair may hold; None: unlimited.  *source* says where it comes from."""

    max_concurrent_sessions: int | None = None
    max_pending_sessions: int | None = None
    # slot -> most the keypair may hold; a slot not named is not limited (0 means none).
    total_resource_slots: Mapping[str, Decimal] | None = None
    source: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "max_concurrent_sessions": self.max_concurrent_sessions,
            "max_pending_sessions": self.max_pending_sessions,
            "total_resource_slots": None
            if self.total_resource_slots is None
            else {k: str(v) for k, v in sorted(self.total_resource_slots.items())},
        }


@dataclass(frozen=True)
class GroupOptions:
    hol_blocking: bool = False
    preemption: str = "off"
    validators: tuple[str, ...] | None = None
    fair_share_half_life: float = 86400.0
    pending_timeout: float | None = None
    keypair_limits: KeypairLimits = KeypairLimits()

    @classmethod
    def parse(
        cls,
        raw: Mapping[str, Any] | None,
        *,
        group: str = "",
        known_slots: Iterable[str] = KNOWN_SLOTS,
    ) -> GroupOptions:
        raw = dict(raw or {})
        where = f"resource group {group!r} options" if group else "options"
        _no_unknown(raw, {f for f in cls.__dataclass_fields__}, where)
        hol = raw.get("hol_blocking", False)
        if not isinstance(hol, bool):
            raise InvalidAPIParameters(
                f"{where}.hol_blocking: invalid value {hol!r}; expected true or false"
            )
        preemption = raw.get("preemption", "off")
        if preemption not in PREEMPTION_MODES:
            raise InvalidAPIParameters(
                f"{where}.preemption: invalid value {preemption!r}; expected one of "
                f"{', '.join(PREEMPTION_MODES)}"
            )
        validators = raw.get("validators")
        if validators is not None and not (
            isinstance(validators, list) and all(isinstance(v, str) for v in validators)
        ):
            raise InvalidAPIParameters(
                f"{where}.validators: invalid value {validators!r}; expected a list of validator names or null"
            )
        half_life = _seconds(
            raw.get("fair_share_half_life", 86400.0), f"{where}.fair_share_half_life"
        )
        if half_life is None or half_life <= 0:
            raise InvalidAPIParameters(
                f"{where}.fair_share_half_life: invalid value {half_life!r}; expected seconds > 0"
            )
        limits_raw = raw.get("keypair_limits") or {}
        if not isinstance(limits_raw, dict):
            raise InvalidAPIParameters(
                f"{where}.keypair_limits: invalid value {limits_raw!r}; expected an object"
            )
        return cls(
            hol_blocking=hol,
            preemption=preemption,
            validators=None if validators is None else tuple(validators),
            fair_share_half_life=half_life,
            pending_timeout=_seconds(raw.get("pending_timeout"), f"{where}.pending_timeout"),
            keypair_limits=_limits(limits_raw, f"{where}.keypair_limits", group, known_slots),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "hol_blocking": self.hol_blocking,
            "preemption": self.preemption,
            "validators": None if self.validators is None else list(self.validators),
            "fair_share_half_life": self.fair_share_half_life,
            "pending_timeout": self.pending_timeout,
            "keypair_limits": self.keypair_limits.to_json(),
        }


def _no_unknown(raw: Mapping[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(raw) - known)
    if unknown:
        raise InvalidAPIParameters(
            f"{where}: unknown key {unknown[0]!r}; known keys: {', '.join(sorted(known))}"
        )


def _seconds(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise InvalidAPIParameters(
            f"{where}: invalid value {value!r}; expected seconds >= 0 or null"
        )
    return float(value)


def _count(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidAPIParameters(
            f"{where}: invalid value {value!r}; expected an integer >= 0 or null"
        )
    return value


def _quota(raw: Mapping[str, Any], where: str, known_slots: Iterable[str]) -> dict[str, Decimal]:
    try:
        parsed = ResourceSlots.parse(raw, known=known_slots)
    except InvalidAPIParameters as e:
        raise InvalidAPIParameters(f"{where}.total_resource_slots: {e}") from None
    return {name: parsed[name] for name in raw}


def _limits(
    raw: Mapping[str, Any], where: str, group: str, known_slots: Iterable[str]
) -> KeypairLimits:
    _no_unknown(
        raw, {"max_concurrent_sessions", "max_pending_sessions", "total_resource_slots"}, where
    )
    total = raw.get("total_resource_slots")
    if total is not None and not isinstance(total, dict):
        raise InvalidAPIParameters(
            f"{where}.total_resource_slots: invalid value {total!r}; expected an object of slot amounts"
        )
    return KeypairLimits(
        max_concurrent_sessions=_count(
            raw.get("max_concurrent_sessions"), f"{where}.max_concurrent_sessions"
        ),
        max_pending_sessions=_count(
            raw.get("max_pending_sessions"), f"{where}.max_pending_sessions"
        ),
        total_resource_slots=None if total is None else _quota(total, where, known_slots),
        source=f"resource group {group!r} option keypair_limits" if group else "keypair_limits",
    )
