"""What the registry clients speak in: a registry's settings, image references, image records.

Pure: no I/O.  An image's catalog name is its pull reference, ``HOST/REPOSITORY:TAG``
(``127.0.0.1:5000/backendai/python:3.11``), so an agent hands it to Docker as is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from ..config import Secret
from ..errors import InvalidAPIParameters
from .manifests import KERNELSPEC_LABEL

__all__ = [
    "REGISTRY_TYPES",
    "ImageRecord",
    "ImageReference",
    "RegistrySpec",
    "RegistryType",
    "ScanResult",
    "parse_reference",
    "parse_registry_spec",
]

RegistryType = Literal["docker", "harbor"]
REGISTRY_TYPES: tuple[RegistryType, ...] = ("docker", "harbor")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
# One path component of a repository name (the distribution spec's grammar, lower case).
_COMPONENT_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$")


@dataclass(frozen=True)
class RegistrySpec:
    """A registered registry.  ``password`` is a Secret: it never shows in a repr or a log."""

    name: str
    url: str
    type: RegistryType = "docker"
    project: str = ""
    username: str = ""
    password: Secret = field(default_factory=lambda: Secret(""))

    @property
    def host(self) -> str:
        """``host[:port]`` as image references spell it."""
        return urlsplit(self.url).netloc

    def image_name(self, repository: str, tag: str) -> str:
        return f"{self.host}/{repository}:{tag}"

    def to_wire(self) -> dict[str, str]:
        """What the manager sends an agent that must pull (over the cluster-secret RPC)."""
        return {
            "name": self.name,
            "url": self.url,
            "type": self.type,
            "project": self.project,
            "username": self.username,
            "password": self.password.reveal(),
        }

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any]) -> RegistrySpec:
        return parse_registry_spec(raw, where="registry")


def _text(raw: Mapping[str, Any], key: str, where: str, default: str | None = None) -> str:
    value = raw.get(key, default)
    if value is None:
        raise InvalidAPIParameters(f"{where}.{key}: missing")
    if not isinstance(value, str):
        raise InvalidAPIParameters(f"{where}.{key}: invalid value {value!r}; expected a string")
    return value.strip() if key != "password" else value


def parse_registry_spec(raw: Any, *, where: str = "body") -> RegistrySpec:
    """Validate a registry's settings (an admin's request, or a create spec from the manager)."""
    if not isinstance(raw, Mapping):
        raise InvalidAPIParameters(f"{where}: expected an object, got {type(raw).__name__}")
    name = _text(raw, "name", where)
    if not _NAME_RE.match(name):
        raise InvalidAPIParameters(
            f"{where}.name: invalid value {name!r}; expected 1-64 lower-case letters, digits, "
            "'.', '_', '-', starting with a letter or digit"
        )
    url = _text(raw, "url", where).rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        raise InvalidAPIParameters(
            f"{where}.url: invalid value {url!r}; expected http(s)://HOST[:PORT] "
            "such as http://127.0.0.1:5000 or https://harbor.example.com"
        )
    if parts.username or parts.password or parts.query or parts.fragment:
        raise InvalidAPIParameters(
            f"{where}.url: {parts.scheme}://{parts.hostname}...: credentials, query or fragment "
            "in the URL; give username and password separately"
        )
    kind = _text(raw, "type", where, "docker")
    if kind not in REGISTRY_TYPES:
        raise InvalidAPIParameters(
            f"{where}.type: invalid value {kind!r}; expected one of {', '.join(REGISTRY_TYPES)}"
        )
    project = _text(raw, "project", where, "").strip("/")
    if project and not all(_COMPONENT_RE.match(c) for c in project.split("/")):
        raise InvalidAPIParameters(
            f"{where}.project: invalid value {project!r}; expected a repository namespace "
            "such as 'library' (lower-case letters, digits, '.', '_', '-')"
        )
    if kind == "harbor" and (not project or "/" in project):
        raise InvalidAPIParameters(
            f"{where}.project: {project!r}; a Harbor registry needs the name of one Harbor project"
        )
    username = _text(raw, "username", where, "")
    password = _text(raw, "password", where, "")
    if bool(username) != bool(password):
        raise InvalidAPIParameters(
            f"{where}: username {username!r} given "
            f"{'without' if username else 'with'} a password; give both or neither"
        )
    return RegistrySpec(name, url, kind, project, username, Secret(password))


@dataclass(frozen=True)
class ImageReference:
    """``[HOST/]REPOSITORY[:TAG][@DIGEST]`` split into its parts."""

    host: str
    repository: str
    tag: str
    digest: str = ""

    @property
    def reference(self) -> str:
        """What a manifest request names: the digest when given, else the tag."""
        return self.digest or self.tag

    def __str__(self) -> str:
        base = f"{self.host}/{self.repository}" if self.host else self.repository
        return (
            base + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")
        )


def parse_reference(ref: str) -> ImageReference:
    """Split an image reference the way Docker does (a first component with '.' or ':' or
    ``localhost`` is a host); the tag defaults to ``latest``."""
    rest, _, digest = ref.partition("@")
    if digest and not _DIGEST_RE.match(digest):
        raise InvalidAPIParameters(f"image {ref!r}: invalid digest {digest!r}")
    host = ""
    first, slash, remainder = rest.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        host, rest = first, remainder
    repository, tag = rest, ""
    last_colon = rest.rfind(":")
    if last_colon > rest.rfind("/"):
        repository, tag = rest[:last_colon], rest[last_colon + 1 :]
        if not _TAG_RE.match(tag):
            raise InvalidAPIParameters(f"image {ref!r}: invalid tag {tag!r}")
    if not repository or not all(_COMPONENT_RE.match(c) for c in repository.split("/")):
        raise InvalidAPIParameters(
            f"image {ref!r}: invalid repository {repository!r}; expected lower-case path "
            "components such as backendai/python"
        )
    return ImageReference(host, repository, tag or ("" if digest else "latest"), digest)


@dataclass(frozen=True)
class ImageRecord:
    """One tag of one repository for one platform, as a registry describes it."""

    repository: str
    tag: str
    digest: str  # the platform's manifest digest
    architecture: str  # normalized: x86_64, aarch64, ...
    os: str = "linux"
    size_bytes: int = 0
    labels: Mapping[str, str] = field(default_factory=dict)
    layers: tuple[tuple[str, int], ...] = ()  # (digest, size) in order
    index_digest: str = ""  # the manifest list's digest when the tag names one


@dataclass
class ScanResult:
    """What a rescan found: kernel image records, and what it passed over and why."""

    registry: str
    records: list[ImageRecord] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def skip(self, what: str, why: str) -> None:
        self.skipped.append(f"{what}: {why}")

    def keep_kernel_images(self, records: Iterable[ImageRecord]) -> None:
        """Add the kernel images among *records*; pass over the others, saying why."""
        for record in records:
            if KERNELSPEC_LABEL in record.labels:
                self.records.append(record)
            else:
                self.skip(
                    f"{record.repository}:{record.tag} ({record.architecture})",
                    f"not a kernel image (no {KERNELSPEC_LABEL} label)",
                )
