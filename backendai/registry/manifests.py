"""Image manifests and manifest lists (Docker v2 schema 2 and OCI), parsed.  Pure: no I/O.

A tag names either one image manifest (one platform, taken from its config blob) or a
manifest list / OCI index whose entries name one manifest per platform.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import RegistryError
from ..hw.arch import normalize_arch

__all__ = [
    "ACCEPT",
    "INDEX_TYPES",
    "MANIFEST_TYPES",
    "ImageManifest",
    "PlatformEntry",
    "content_digest",
    "kernel_labels",
    "parse_index",
    "parse_manifest",
    "platform_of",
]

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST_TYPES = frozenset({DOCKER_MANIFEST, OCI_MANIFEST})
INDEX_TYPES = frozenset({DOCKER_LIST, OCI_INDEX})
ACCEPT = ", ".join([DOCKER_LIST, OCI_INDEX, DOCKER_MANIFEST, OCI_MANIFEST])
# Label prefix of kernel images; an image without the kernelspec label is not a kernel image.
KERNEL_LABEL_PREFIX = "ai.backend."
KERNELSPEC_LABEL = "ai.backend.kernelspec"


@dataclass(frozen=True)
class ImageManifest:
    config_digest: str
    layers: tuple[tuple[str, int], ...]  # (digest, size)
    config_size: int

    @property
    def size(self) -> int:
        return self.config_size + sum(size for _, size in self.layers)


@dataclass(frozen=True)
class PlatformEntry:
    digest: str
    architecture: str  # normalized
    os: str
    variant: str = ""


def content_digest(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


def _media_type(doc: Mapping[str, Any], header_type: str) -> str:
    declared = doc.get("mediaType")
    return str(declared) if isinstance(declared, str) and declared else header_type


def is_index(doc: Mapping[str, Any], header_type: str) -> bool:
    kind = _media_type(doc, header_type)
    return kind in INDEX_TYPES or (kind == "" and isinstance(doc.get("manifests"), list))


def parse_manifest(doc: Mapping[str, Any], header_type: str, where: str) -> ImageManifest:
    kind = _media_type(doc, header_type)
    if doc.get("schemaVersion") == 1 or "prettyjws" in kind:
        raise RegistryError(
            f"{where}: a schema 1 manifest, which is not supported; re-push the image with a "
            "current Docker (schema 2 or OCI)"
        )
    try:
        config = doc["config"]
        layers = tuple((str(x["digest"]), int(x.get("size", 0))) for x in doc.get("layers", []))
        return ImageManifest(str(config["digest"]), layers, int(config.get("size", 0)))
    except (KeyError, TypeError, ValueError) as e:
        raise RegistryError(
            f"{where}: malformed manifest ({kind or 'no media type'}): {e!r}"
        ) from None


def parse_index(doc: Mapping[str, Any], where: str) -> list[PlatformEntry]:
    """The image entries of a manifest list / OCI index (attestations and unknowns skipped)."""
    entries = []
    try:
        for m in doc["manifests"]:
            platform = m.get("platform") or {}
            arch, os_ = platform.get("architecture", ""), platform.get("os", "")
            if not arch or arch == "unknown" or os_ == "unknown":
                continue  # e.g. BuildKit's attestation manifests
            variant = str(platform.get("variant", ""))
            entries.append(
                PlatformEntry(str(m["digest"]), platform_arch(arch, variant), os_, variant)
            )
    except (KeyError, TypeError, AttributeError) as e:
        raise RegistryError(f"{where}: malformed manifest list: {e!r}") from None
    return entries


def platform_arch(arch: str, variant: str = "") -> str:
    """``arm64`` -> ``aarch64``, ``amd64`` -> ``x86_64``; 32-bit ARM keeps its variant."""
    if arch == "arm" and variant:
        return f"arm{variant.removeprefix('v')}" if variant.startswith("v") else "arm"
    return normalize_arch(arch)


def platform_of(config: Mapping[str, Any]) -> tuple[str, str]:
    """(normalized architecture, os) from an image config blob."""
    arch = str(config.get("architecture") or "")
    variant = str(config.get("variant") or "")
    return platform_arch(arch, variant) if arch else "", str(config.get("os") or "linux")


def kernel_labels(config: Mapping[str, Any]) -> dict[str, str]:
    """The image's labels from its config blob (``config.Labels``), as strings."""
    inner = config.get("config") or config.get("container_config") or {}
    labels = inner.get("Labels") if isinstance(inner, Mapping) else None
    if not isinstance(labels, Mapping):
        return {}
    return {str(k): str(v) for k, v in labels.items()}
