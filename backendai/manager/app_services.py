"""The apps an image offers, as its labels declare them.  Pure.

``ai.backend.service-ports`` (Backend.AI's label): ``name:protocol:port`` entries,
comma-separated, e.g. ``jupyter:http:8888,web:http:8080,sshd:tcp:2200``.  Our
labels add how to start each one and who may reach it:

- ``ai.backendai.service.<name>``: the command; ``{port}`` is replaced by the
  port the agent picks (``$PORT`` holds it too);
- ``ai.backendai.service-public``: names of apps reachable without login.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from ..errors import InvalidAPIParameters

__all__ = ["PORTS_LABEL", "PUBLIC_LABEL", "ServiceDef", "service_defs"]

PORTS_LABEL = "ai.backend.service-ports"
COMMAND_LABEL = "ai.backendai.service."
PUBLIC_LABEL = "ai.backendai.service-public"


@dataclass(frozen=True)
class ServiceDef:
    name: str
    protocol: Literal["http", "tcp"]
    port: int  # the port the image suggests (informational: the agent picks the real one)
    command: str
    public: bool


def service_defs(labels: Mapping[str, str], image: str = "") -> dict[str, ServiceDef]:
    """The startable apps of an image; a malformed label is named in the error."""
    public = {p.strip() for p in labels.get(PUBLIC_LABEL, "").split(",") if p.strip()}
    found: dict[str, ServiceDef] = {}
    for entry in labels.get(PORTS_LABEL, "").split(","):
        if not entry.strip():
            continue
        parts = entry.strip().split(":")
        if len(parts) != 3 or parts[1] not in ("http", "tcp", "preopen") or not parts[2].isdigit():
            raise InvalidAPIParameters(
                f"image {image!r} label {PORTS_LABEL}: malformed entry {entry!r}; "
                "expected name:http|tcp:port"
            )
        name, protocol, port = parts[0], parts[1], int(parts[2])
        command = labels.get(COMMAND_LABEL + name, "")
        if not command:
            continue  # declared but not startable by us (a port the image opens itself)
        found[name] = ServiceDef(
            name, "tcp" if protocol == "tcp" else "http", port, command, name in public
        )
    return found
