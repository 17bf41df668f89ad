"""The scheduling fields of ``POST /session``: ``preemptible``, ``dependencies``, ``startsAt``.

Checked before anything is written (a bad request changes nothing); stored
with the session by ``session_ops``.  Also: which resource slot names a
request may use (the known ones plus any an agent of the group advertises).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ..db.tables import agents, session_dependencies
from ..errors import InvalidAPIParameters
from ..sched import KNOWN_SLOTS
from . import repo

__all__ = [
    "MAX_DEPENDENCIES",
    "SchedulingRequest",
    "known_slots",
    "parse_scheduling_fields",
    "resolve_dependencies",
    "store_dependencies",
]

MAX_DEPENDENCIES = 64
_RELATIVE = re.compile(r"^\s*\+?(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class SchedulingRequest:
    preemptible: bool = False
    dependencies: tuple[str, ...] = ()  # session ids or names, as given
    starts_at: float | None = None


def _starts_at(value: Any, now: float) -> float:
    if not isinstance(value, str) or not value.strip():
        raise InvalidAPIParameters(
            f"startsAt: invalid value {value!r}; expected an ISO 8601 time "
            "(2030-01-01T09:00:00+00:00) or a delay such as 30m, 2h, 1d"
        )
    m = _RELATIVE.match(value)
    if m:
        return now + float(m.group(1)) * _UNIT[m.group(2)]
    try:
        when = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidAPIParameters(
            f"startsAt: invalid value {value!r}; expected an ISO 8601 time "
            "(2030-01-01T09:00:00+00:00) or a delay such as 30m, 2h, 1d"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def parse_scheduling_fields(
    body: Mapping[str, Any], session_type: str, now: float
) -> SchedulingRequest:
    preemptible = body.get("preemptible", False)
    if not isinstance(preemptible, bool):
        raise InvalidAPIParameters(
            f"preemptible: invalid value {preemptible!r}; expected true or false"
        )
    deps = body.get("dependencies") or []
    if not isinstance(deps, list) or not all(isinstance(d, str) and d for d in deps):
        raise InvalidAPIParameters(
            f"dependencies: invalid value {deps!r}; expected a list of session ids or names"
        )
    if len(deps) > MAX_DEPENDENCIES:
        raise InvalidAPIParameters(
            f"dependencies: {len(deps)} sessions given; at most {MAX_DEPENDENCIES} are allowed"
        )
    raw_start = body.get("startsAt", body.get("starts_at"))
    starts_at = None
    if raw_start is not None:
        if session_type != "batch":
            raise InvalidAPIParameters(
                f"startsAt: only a batch session can start later; this one is {session_type!r}"
            )
        starts_at = _starts_at(raw_start, now)
    return SchedulingRequest(preemptible, tuple(dict.fromkeys(deps)), starts_at)


def resolve_dependencies(conn: sa.Connection, refs: Sequence[str], access_key: str) -> list[str]:
    """The ids of *refs* among the owner's sessions; an unknown one is refused."""
    ids: list[str] = []
    for n, ref in enumerate(refs):
        row = repo.find_session(conn, ref, access_key)
        if row is None:
            raise InvalidAPIParameters(
                f"dependencies[{n}]: no session {ref!r} found among your sessions"
            )
        if row["id"] not in ids:
            ids.append(row["id"])
    return ids


def store_dependencies(conn: sa.Connection, session_id: str, ids: Sequence[str]) -> None:
    if ids:
        conn.execute(
            session_dependencies.insert(),
            [{"session_id": session_id, "depends_on": d} for d in ids],
        )


def known_slots(conn: sa.Connection, group: str) -> set[str]:
    """The slots a request in *group* may name: the known ones and those its agents offer."""
    names = set(KNOWN_SLOTS)
    for capacity in conn.execute(
        sa.select(agents.c.capacity).where(
            agents.c.resource_group == group, agents.c.status != "TERMINATED"
        )
    ).scalars():
        names |= set(capacity)
    return names
