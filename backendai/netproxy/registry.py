"""The app routes one proxy serves, in either mode, and its persisted port allocation.

``wildcard`` mode: one listener; an app is ``<name>.<domain>``, where the name
is derived from the route id (the same after a restart).  ``port`` mode: each
app gets a port of its own from a configured range; the allocation is kept in
a small JSON file so that a restarted proxy gives every app its port back.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import UnavailableError
from .head import RequestHead
from .routes import Route

__all__ = ["AppRoute", "Placement", "PortRouter", "RouteRegistry", "wildcard_name"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AppRoute:
    """One app of one session, as the manager registers it."""

    session_id: str
    app: str
    target_host: str
    target_port: int
    protocol: Literal["http", "tcp"] = "http"
    owner: str = ""
    public: bool = False
    allowed_client_ips: tuple[str, ...] = ()
    # Reached through the agent's forward (see Route.forwarded).
    forwarded: bool = False

    @property
    def route_id(self) -> str:
        return f"{self.session_id}/{self.app}"

    def route(self) -> Route:
        return Route(
            self.target_host,
            self.target_port,
            name=self.route_id,
            protocol=self.protocol,
            owner=self.owner,
            public=self.public,
            allowed_client_ips=self.allowed_client_ips,
            forwarded=self.forwarded,
        )


@dataclass(frozen=True)
class Placement:
    """Where clients reach a route: a subdomain (wildcard) or a port (port mode)."""

    route_id: str
    name: str
    port: int
    url: str


def wildcard_name(route_id: str, app: str) -> str:
    """A DNS label for a route: the app's name, and a digest of the route id."""
    label = re.sub(r"[^a-z0-9-]+", "-", app.lower()).strip("-")[:30] or "app"
    return f"{label}-{hashlib.sha256(route_id.encode()).hexdigest()[:16]}"


class RouteRegistry:
    """Route id -> app and placement; the router of the wildcard listener."""

    def __init__(
        self,
        mode: Literal["wildcard", "port"],
        *,
        domain: str,
        public_host: str,
        port: int,
        ports: range,
        scheme: str = "http",
        state_file: Path | None = None,
    ) -> None:
        self.mode = mode
        self.domain = domain.lower().strip(".")
        self.public_host = public_host
        self.port = port
        self.ports = ports
        self.scheme = scheme
        self.state_file = state_file
        self.apps: dict[str, AppRoute] = {}
        self.placements: dict[str, Placement] = {}
        self._by_name: dict[str, Route] = {}
        self._by_port: dict[int, Route] = {}
        # route id -> port, kept across restarts (port mode)
        self._allocated: dict[str, int] = self._load()
        self._refused_ports: set[int] = set()

    # -- allocation state -------------------------------------------------------------

    def _load(self) -> dict[str, int]:
        if self.state_file is None or not self.state_file.exists():
            return {}
        try:
            data = json.loads(self.state_file.read_text())
            return {str(k): int(v) for k, v in data["ports"].items() if int(v) in self.ports}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            log.warning(
                "ignoring the port allocation in %s (%s); starting afresh", self.state_file, e
            )
            return {}

    def _save(self) -> None:
        if self.state_file is None:
            return
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"ports": self._allocated}, sort_keys=True))
        os.replace(tmp, self.state_file)

    def allocated_ports(self) -> list[int]:
        return sorted(self._allocated.values())

    def _free_port(self) -> int:
        used = set(self._allocated.values()) | self._refused_ports
        for p in self.ports:
            if p not in used:
                return p
        raise UnavailableError(
            f"app proxy: every port of {self.ports.start}-{self.ports.stop - 1} is in use "
            f"({len(self._allocated)} apps); widen appproxy.port_range_start/port_range_end"
        )

    def refuse_port(self, port: int) -> None:
        """*port* cannot be listened on: give it back and never hand it out again."""
        self._refused_ports.add(port)
        for rid, p in list(self._allocated.items()):
            if p == port:
                del self._allocated[rid]
                self._drop(rid)
        self._save()

    # -- routes --------------------------------------------------------------------

    def add(self, app: AppRoute) -> Placement:
        """Register (or update) a route; the same route id keeps its name or port."""
        rid = app.route_id
        self._drop(rid)
        route = app.route()
        if self.mode == "port":
            port = self._allocated.get(rid)
            if port is None:
                port = self._allocated[rid] = self._free_port()
                self._save()
            self._by_port[port] = route
            placement = Placement(rid, "", port, f"{self.scheme}://{self.public_host}:{port}/")
        else:
            name = wildcard_name(rid, app.app)
            self._by_name[name] = route
            url = f"{self.scheme}://{name}.{self.domain}:{self.port}/"
            placement = Placement(rid, name, self.port, url)
        self.apps[rid] = app
        self.placements[rid] = placement
        return placement

    def add_at(self, app: AppRoute, port: int) -> None:
        """Register a route at the port another process placed it on (port mode workers:
        they follow the table, they allocate nothing)."""
        rid = app.route_id
        self._drop(rid)
        self._by_port[port] = app.route()
        self.apps[rid] = app
        self.placements[rid] = Placement(
            rid, "", port, f"{self.scheme}://{self.public_host}:{port}/"
        )

    def _drop(self, rid: str) -> Placement | None:
        placement = self.placements.pop(rid, None)
        self.apps.pop(rid, None)
        if placement is not None:
            self._by_name.pop(placement.name, None)
            if self.mode == "port":
                self._by_port.pop(placement.port, None)
        return placement

    def remove(self, route_id: str) -> Placement | None:
        placement = self._drop(route_id)
        if self._allocated.pop(route_id, None) is not None:
            self._save()
        return placement

    def remove_session(self, session_id: str) -> list[Placement]:
        ids = [rid for rid, a in self.apps.items() if a.session_id == session_id]
        ids += [rid for rid in self._allocated if rid.startswith(f"{session_id}/")]
        return [p for rid in dict.fromkeys(ids) if (p := self.remove(rid)) is not None]

    def retain(self, keep: set[str]) -> list[str]:
        """Drop every route (and kept port) whose id is not in *keep*; the ids dropped."""
        dropped = [rid for rid in dict.fromkeys([*self.apps, *self._allocated]) if rid not in keep]
        for rid in dropped:
            self.remove(rid)
        return dropped

    # -- routing -------------------------------------------------------------------

    def at_port(self, port: int) -> Route | None:
        return self._by_port.get(port)

    def route_for(self, head: RequestHead) -> Route | None:
        host = head.host
        suffix = "." + self.domain
        if not host.endswith(suffix):
            return None
        return self._by_name.get(host[: -len(suffix)])

    def unknown(self, head: RequestHead) -> str:
        return f"no app is served at host {head.host!r}"


class PortRouter:
    """The router of one port-mode listener: whatever app holds the port, whatever the Host."""

    def __init__(self, registry: RouteRegistry, port: int) -> None:
        self.registry = registry
        self.port = port

    def route_for(self, head: RequestHead) -> Route | None:
        return self.registry.at_port(self.port)

    def unknown(self, head: RequestHead) -> str:
        return f"no app is served at port {self.port}"
