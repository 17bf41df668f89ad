"""The image catalog in the database: registries, images, aliases; resolving what users name.

Sync units of work over one Connection (``Database.run`` opens the transaction).  An
image row is keyed ``(name, architecture)``; ``name`` is the pull reference
(``127.0.0.1:5000/backendai/python:3.11``), ``registry`` the registry it was scanned
from, or ``""`` for an image only agents reported (built or loaded locally).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa

from ..config import Secret
from ..db.tables import agents, image_aliases, images, registries
from ..errors import Conflict, InvalidAPIParameters, NotFound, UnknownImage
from ..hw.arch import normalize_arch
from ..registry import RegistrySpec, ScanResult

__all__ = [
    "add_registry",
    "apply_scan",
    "forget_image",
    "forget_registry",
    "get_registry",
    "image_json",
    "list_images",
    "list_registries",
    "note_agent_images",
    "pull_source",
    "pullable_images",
    "remove_alias",
    "resolve_image",
    "set_alias",
]

_ALIAS_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,255}$")
_RESOURCE_PREFIX = "ai.backend.resource.min."


def _spec(row: sa.RowMapping) -> RegistrySpec:
    return RegistrySpec(
        name=row["name"],
        url=row["url"],
        type=row["type"],
        project=row["project"],
        username=row["username"],
        password=Secret(row["password"]),
    )


def add_registry(conn: sa.Connection, spec: RegistrySpec, now: float) -> None:
    exists = conn.execute(sa.select(registries.c.name).where(registries.c.name == spec.name))
    if exists.first() is not None:
        raise Conflict(f"registry {spec.name!r} is already registered; forget it first")
    conn.execute(
        registries.insert().values(
            name=spec.name,
            url=spec.url,
            type=spec.type,
            project=spec.project,
            username=spec.username,
            password=spec.password.reveal(),
            created_at=now,
        )
    )


def get_registry(conn: sa.Connection, name: str) -> RegistrySpec:
    row = conn.execute(sa.select(registries).where(registries.c.name == name)).mappings().first()
    if row is None:
        known = ", ".join(conn.execute(sa.select(registries.c.name)).scalars()) or "none"
        raise NotFound(f"no registry {name!r}; registered: {known}")
    return _spec(row)


def list_registries(conn: sa.Connection) -> list[dict[str, Any]]:
    """Every registry, with its image count; the password only as whether one is set."""
    counts: dict[str, int] = dict(
        conn.execute(
            sa.select(images.c.registry, sa.func.count()).group_by(images.c.registry)
        ).all()
    )
    rows = conn.execute(sa.select(registries).order_by(registries.c.name)).mappings()
    return [
        {
            "name": r["name"],
            "url": r["url"],
            "type": r["type"],
            "project": r["project"],
            "username": r["username"],
            "password": "********" if r["password"] else "",
            "images": counts.get(r["name"], 0),
            "createdAt": r["created_at"],
            "lastScanned": r["last_scanned"],
        }
        for r in rows
    ]


def _drop_dangling_aliases(conn: sa.Connection) -> None:
    conn.execute(
        image_aliases.delete().where(image_aliases.c.target.not_in(sa.select(images.c.name)))
    )


def forget_registry(conn: sa.Connection, name: str) -> int:
    """Remove the registry and the images scanned from it; returns how many image rows went."""
    get_registry(conn, name)
    removed = conn.execute(images.delete().where(images.c.registry == name)).rowcount
    conn.execute(registries.delete().where(registries.c.name == name))
    _drop_dangling_aliases(conn)
    return int(removed)


def apply_scan(
    conn: sa.Connection, spec: RegistrySpec, result: ScanResult, now: float
) -> dict[str, Any]:
    """Make the registry's rows what the scan found: upsert its records, drop the rest."""
    current = {
        (r.name, r.architecture): r.digest
        for r in conn.execute(
            sa.select(images.c.name, images.c.architecture, images.c.digest).where(
                images.c.registry == spec.name
            )
        )
    }
    seen: set[tuple[str, str]] = set()
    added = updated = 0
    for rec in result.records:
        key = (spec.image_name(rec.repository, rec.tag), rec.architecture)
        if key in seen:
            continue
        seen.add(key)
        values = {
            "digest": rec.digest,
            "size_bytes": rec.size_bytes,
            "labels": dict(rec.labels),
            "last_seen": now,
            "registry": spec.name,
            "tag": rec.tag,
        }
        cond = sa.and_(images.c.name == key[0], images.c.architecture == key[1])
        if conn.execute(images.update().where(cond).values(**values)).rowcount:
            updated += key in current and current[key] != rec.digest
            added += key not in current
        else:
            conn.execute(images.insert().values(name=key[0], architecture=key[1], **values))
            added += 1
    gone = [k for k in current if k not in seen]
    for name, arch in gone:
        conn.execute(
            images.delete().where(
                images.c.name == name, images.c.architecture == arch, images.c.registry == spec.name
            )
        )
    _drop_dangling_aliases(conn)
    conn.execute(registries.update().where(registries.c.name == spec.name).values(last_scanned=now))
    return {
        "registry": spec.name,
        "images": len(seen),
        "added": added,
        "updated": updated,
        "removed": len(gone),
        "skipped": list(result.skipped),
    }


def _aliases_by_target(conn: sa.Connection) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for alias, target in conn.execute(
        sa.select(image_aliases.c.alias, image_aliases.c.target).order_by(image_aliases.c.alias)
    ):
        out.setdefault(target, []).append(alias)
    return out


def image_json(row: sa.RowMapping, aliases: Iterable[str] = ()) -> dict[str, Any]:
    labels = dict(row["labels"] or {})
    return {
        "name": row["name"],
        "registry": row["registry"],
        "tag": row["tag"],
        "architecture": row["architecture"],
        "digest": row["digest"],
        "sizeBytes": row["size_bytes"],
        "labels": labels,
        "resourceLimits": {
            k.removeprefix(_RESOURCE_PREFIX): v
            for k, v in sorted(labels.items())
            if k.startswith(_RESOURCE_PREFIX)
        },
        "aliases": list(aliases),
        "lastSeen": row["last_seen"],
    }


def list_images(
    conn: sa.Connection, *, registry: str | None = None, architecture: str | None = None
) -> list[dict[str, Any]]:
    q = sa.select(images).order_by(images.c.name, images.c.architecture)
    if registry is not None:
        q = q.where(images.c.registry == registry)
    if architecture is not None:
        q = q.where(images.c.architecture == normalize_arch(architecture))
    by_target = _aliases_by_target(conn)
    return [image_json(r, by_target.get(r["name"], ())) for r in conn.execute(q).mappings()]


def set_alias(conn: sa.Connection, alias: str, target: str, now: float) -> None:
    if not _ALIAS_RE.match(alias):
        raise InvalidAPIParameters(
            f"alias: invalid value {alias!r}; expected 1-256 letters, digits and . _ : / @ -"
        )
    target = resolve_name(conn, target)
    if conn.execute(sa.select(images.c.name).where(images.c.name == alias)).first() is not None:
        raise Conflict(f"alias {alias!r} is the name of an image; choose another alias")
    cond = image_aliases.c.alias == alias
    if not conn.execute(image_aliases.update().where(cond).values(target=target)).rowcount:
        conn.execute(image_aliases.insert().values(alias=alias, target=target, created_at=now))


def remove_alias(conn: sa.Connection, alias: str) -> None:
    if not conn.execute(image_aliases.delete().where(image_aliases.c.alias == alias)).rowcount:
        raise NotFound(f"no image alias {alias!r}")


def forget_image(conn: sa.Connection, name: str, architecture: str | None = None) -> int:
    """Remove an image's rows (one architecture, or all); returns how many went."""
    name = resolve_name(conn, name)
    cond = images.c.name == name
    if architecture is not None:
        cond = sa.and_(cond, images.c.architecture == normalize_arch(architecture))
    removed = int(conn.execute(images.delete().where(cond)).rowcount)
    if not removed:
        raise UnknownImage(f"image {name!r} has no {architecture} build in the catalog")
    _drop_dangling_aliases(conn)
    return removed


def resolve_name(conn: sa.Connection, ref: str) -> str:
    """The canonical name *ref* means: an alias's target, the name itself, or the one name
    that ends with ``/ref`` with the fewest extra path components (so ``python:3.11``
    finds ``backendai/python:3.11``, and a registry's copy only when there is no other)."""
    target = conn.execute(
        sa.select(image_aliases.c.target).where(image_aliases.c.alias == ref)
    ).scalar()
    if target is not None:
        return str(target)
    names = sorted(set(conn.execute(sa.select(images.c.name)).scalars()))
    if ref in names:
        return ref
    matches = [n for n in names if n.endswith("/" + ref)]
    if not matches:
        known = ", ".join(names) or "none yet (no agent has reported images, no registry scanned)"
        raise UnknownImage(f"unknown image {ref!r}; known images: {known}")
    depth = min(n.count("/") for n in matches)
    closest = [n for n in matches if n.count("/") == depth]
    if len(closest) > 1:
        raise InvalidAPIParameters(
            f"image {ref!r} is ambiguous: it may mean {', '.join(closest)}; give the full name"
        )
    return str(closest[0])


def resolve_image(
    conn: sa.Connection, ref: str, arch: str | None, group: str
) -> tuple[str, str, dict[str, str]]:
    """(name, architecture, labels) for a session in resource group *group*.

    Without an explicit architecture, the one the group's agents have wins; an image
    built only for architectures none of them has is refused with both named.
    """
    name = resolve_name(conn, ref)
    rows = list(
        conn.execute(
            sa.select(images.c.architecture, images.c.labels).where(images.c.name == name)
        ).mappings()
    )
    builds = sorted({r["architecture"] for r in rows})
    if arch is not None:
        wanted = normalize_arch(arch)
        rows = [r for r in rows if r["architecture"] == wanted]
        if not rows:
            raise UnknownImage(
                f"image {name!r} has no {wanted} build; it is built for {', '.join(builds)}"
            )
    else:
        group_archs = set(
            conn.execute(
                sa.select(agents.c.architecture).where(
                    agents.c.resource_group == group, agents.c.status != "TERMINATED"
                )
            ).scalars()
        )
        fitting = [r for r in rows if r["architecture"] in group_archs]
        if group_archs and not fitting:
            raise UnknownImage(
                f"image {name!r} is built only for {', '.join(builds)}; the agents of resource "
                f"group {group!r} are {', '.join(sorted(group_archs))}"
            )
        rows = fitting or rows
    row = min(rows, key=lambda r: r["architecture"])
    return name, row["architecture"], dict(row["labels"] or {})


def note_agent_images(
    conn: sa.Connection, reported: Iterable[Mapping[str, Any]], now: float
) -> None:
    """An agent's heartbeat: add the images it has; a registry's rows keep their digest."""
    for img in reported:
        cond = sa.and_(images.c.name == img["name"], images.c.architecture == img["architecture"])
        registry = conn.execute(sa.select(images.c.registry).where(cond)).scalar()
        if registry is None:
            repo_tag = img["name"].rpartition("/")[2]
            conn.execute(
                images.insert().values(
                    name=img["name"],
                    architecture=img["architecture"],
                    digest=img["digest"],
                    size_bytes=img["size_bytes"],
                    labels=img["labels"],
                    last_seen=now,
                    registry="",
                    tag=repo_tag.partition(":")[2],
                )
            )
        elif registry == "":
            conn.execute(
                images.update()
                .where(cond)
                .values(
                    digest=img["digest"],
                    size_bytes=img["size_bytes"],
                    labels=img["labels"],
                    last_seen=now,
                )
            )
        else:
            conn.execute(images.update().where(cond).values(last_seen=now))


def pull_source(conn: sa.Connection, name: str) -> RegistrySpec | None:
    """The registry an agent that lacks image *name* pulls it from (None: none known)."""
    row = (
        conn.execute(
            sa.select(registries)
            .join(images, images.c.registry == registries.c.name)
            .where(images.c.name == name)
            .limit(1)
        )
        .mappings()
        .first()
    )
    return None if row is None else _spec(row)


def pullable_images(conn: sa.Connection) -> frozenset[tuple[str, str]]:
    """``(name, architecture)`` of every image a registry holds: an agent that lacks one
    of these may still take a kernel of it, and pulls it (for the scheduler)."""
    rows = conn.execute(
        sa.select(images.c.name, images.c.architecture).where(images.c.registry != "")
    )
    return frozenset((r.name, r.architecture) for r in rows)
