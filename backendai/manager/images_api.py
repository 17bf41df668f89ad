"""Admin REST routes for container registries and the image catalog (superadmin only).

    GET    /admin/registries                  registries (password shown only as set or not)
    POST   /admin/registries                  register {name, url, type, project, username,
                                              password, check=true}; check asks the registry
    DELETE /admin/registries/{name}           forget it and the images scanned from it
    POST   /admin/registries/{name}/rescan    rescan one registry
    GET    /admin/images[?registry=&architecture=]
    POST   /admin/images/rescan               rescan every registry (or {"registry": name})
    POST   /admin/images/alias                {alias, target}
    DELETE /admin/images/alias/{alias}
    DELETE /admin/images?name=&architecture=  forget an image (every architecture unless named)

A registry that fails (down, refusing the credentials, missing project) answers 502 with
the type ``registry-<reason>`` and the registry's own words; nothing is changed then.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from quart import Response, g, request
from quart_trio import QuartTrio

from ..errors import Conflict, InvalidAPIParameters, PermissionDenied, RegistryError
from ..registry import RegistrySpec, open_registry_client, parse_registry_spec
from . import catalog
from .api import Caller, json_body, json_response, problem
from .context import ManagerContext

__all__ = ["add_image_routes", "rescan_registry"]

log = logging.getLogger(__name__)


def _superadmin() -> None:
    caller: Caller = g.caller
    if not caller.is_superadmin:
        raise PermissionDenied(
            f"{request.method} {request.path}: only a superadmin manages registries and images "
            f"(keypair {caller.access_key} is {caller.role})"
        )


async def rescan_registry(ctx: ManagerContext, spec: RegistrySpec) -> dict[str, Any]:
    """Scan *spec* and make the catalog's rows of it match; the counts and what was skipped."""
    started = time.monotonic()
    async with open_registry_client(spec) as client:
        result = await client.scan()
    summary = await ctx.db.run(lambda c: catalog.apply_scan(c, spec, result, time.time()))
    log.info(
        "rescanned registry %s (%s) in %.1f s: %d images, %d added, %d updated, %d removed, "
        "%d skipped",
        spec.name,
        spec.url,
        time.monotonic() - started,
        summary["images"],
        summary["added"],
        summary["updated"],
        summary["removed"],
        len(summary["skipped"]),
    )
    return summary


def _optional_text(args: Any, key: str) -> str | None:
    value = args.get(key)
    return None if value in (None, "") else str(value)


def add_image_routes(app: QuartTrio, ctx: ManagerContext) -> None:
    @app.errorhandler(RegistryError)
    async def registry_error(e: RegistryError) -> Response:
        log.warning("registry request failed: %s", e)
        return problem(502, f"registry-{e.reason}", "The container registry failed", str(e))

    @app.route("/admin/registries", methods=["GET"])
    async def list_registries() -> Response:
        _superadmin()
        return json_response({"registries": await ctx.db.run(catalog.list_registries)})

    @app.route("/admin/registries", methods=["POST"])
    async def add_registry() -> Response:
        _superadmin()
        body = await json_body()
        spec = parse_registry_spec(body)
        check = body.get("check", True)
        if not isinstance(check, bool):
            raise InvalidAPIParameters(f"check: invalid value {check!r}; expected true or false")
        taken = [r["name"] for r in await ctx.db.run(catalog.list_registries)]
        if spec.name in taken:
            raise Conflict(f"registry {spec.name!r} is already registered; forget it first")
        if check:
            async with open_registry_client(spec) as client:
                await client.check()
        await ctx.db.run(lambda c: catalog.add_registry(c, spec, time.time()))
        log.info(
            "registry %s registered: %s %s%s (user %s)",
            spec.name,
            spec.type,
            spec.url,
            f" project {spec.project}" if spec.project else "",
            spec.username or "anonymous",
        )
        rows = await ctx.db.run(catalog.list_registries)
        return json_response(next(r for r in rows if r["name"] == spec.name), 201)

    @app.route("/admin/registries/<name>", methods=["DELETE"])
    async def forget_registry(name: str) -> Response:
        _superadmin()
        removed = await ctx.db.run(lambda c: catalog.forget_registry(c, name))
        log.info("registry %s forgotten with its %d images", name, removed)
        return json_response({"registry": name, "removedImages": removed})

    @app.route("/admin/registries/<name>/rescan", methods=["POST"])
    async def rescan_one(name: str) -> Response:
        _superadmin()
        spec = await ctx.db.run(lambda c: catalog.get_registry(c, name))
        return json_response({"results": [await rescan_registry(ctx, spec)]})

    @app.route("/admin/images/rescan", methods=["POST"])
    async def rescan_all() -> Response:
        _superadmin()
        body = await json_body()
        wanted = body.get("registry") if isinstance(body, dict) else None
        if wanted is not None and not isinstance(wanted, str):
            raise InvalidAPIParameters(f"registry: invalid value {wanted!r}; expected a name")
        if wanted:
            names = [wanted]
        else:
            names = [r["name"] for r in await ctx.db.run(catalog.list_registries)]
        specs = await ctx.db.run(lambda c: [catalog.get_registry(c, n) for n in names])
        results = [await rescan_registry(ctx, spec) for spec in specs]
        return json_response({"results": results})

    @app.route("/admin/images", methods=["GET"])
    async def list_images() -> Response:
        _superadmin()
        registry = _optional_text(request.args, "registry")
        arch = _optional_text(request.args, "architecture")
        rows = await ctx.db.run(
            lambda c: catalog.list_images(c, registry=registry, architecture=arch)
        )
        return json_response({"images": rows})

    @app.route("/admin/images", methods=["DELETE"])
    async def forget_image() -> Response:
        _superadmin()
        name = _optional_text(request.args, "name")
        if name is None:
            raise InvalidAPIParameters("name: missing; expected the image to forget")
        arch = _optional_text(request.args, "architecture")
        removed = await ctx.db.run(lambda c: catalog.forget_image(c, name, arch))
        log.info("image %s (%s) forgotten: %d rows", name, arch or "every architecture", removed)
        return json_response({"name": name, "removed": removed})

    @app.route("/admin/images/alias", methods=["POST"])
    async def set_alias() -> Response:
        _superadmin()
        body = await json_body()
        alias, target = body.get("alias"), body.get("target")
        for key, value in (("alias", alias), ("target", target)):
            if not isinstance(value, str) or not value:
                raise InvalidAPIParameters(f"{key}: invalid value {value!r}; expected a string")
        await ctx.db.run(lambda c: catalog.set_alias(c, alias, target, time.time()))
        name = await ctx.db.run(lambda c: catalog.resolve_name(c, alias))
        return json_response({"alias": alias, "target": name})

    @app.route("/admin/images/alias/<path:alias>", methods=["DELETE"])
    async def remove_alias(alias: str) -> Response:
        _superadmin()
        await ctx.db.run(lambda c: catalog.remove_alias(c, alias))
        return json_response({"alias": alias, "removed": True})
