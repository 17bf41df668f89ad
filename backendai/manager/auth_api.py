"""REST routes under ``/auth``: password login to a keypair, the caller's roles, password change.

    POST /auth/authorize         {type: "keypair", domain, username, password} (unsigned)
                                 -> {data: {access_key, secret_key, role, status}}
    GET  /auth/role[?group=ID]   -> {global_role, domain_role, group_role?}
    POST /auth/update-password   {old_password, new_password, new_password2}

A wrong user name, domain or password is one message, so that a caller cannot
tell which was wrong; the password is checked even for an unknown user so that
both cost alike.  Passwords never reach a log or an error message.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
import trio
from quart import Response, g, request
from quart_trio import QuartTrio

from ..db.tables import keypairs, projects, user_projects, users
from ..errors import AuthenticationFailed, InvalidAPIParameters, NotFound
from .api import Caller, json_body, json_response
from .context import ManagerContext
from .passwords import hash_password, verify_password

__all__ = ["add_auth_routes"]

# Verified against when the user does not exist, so that both paths cost one scrypt.
_DUMMY_HASH = hash_password("not a password anyone has")
_MIN_PASSWORD = 8


def _string(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidAPIParameters(f"{key}: missing or not a string; expected a non-empty string")
    return value


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidAPIParameters(f"request body must be a JSON object, got {type(body).__name__}")
    return body


def _load_login(c: sa.Connection, username: str) -> tuple[dict[str, Any] | None, Any]:
    """The user by email or user name, and their oldest active keypair."""
    user = (
        c.execute(
            sa.select(users).where(sa.or_(users.c.email == username, users.c.username == username))
        )
        .mappings()
        .first()
    )
    if user is None:
        return None, None
    kp = c.execute(
        sa.select(keypairs.c.access_key, keypairs.c.secret_key)
        .where(keypairs.c.user == user["uuid"], keypairs.c.is_active.is_(True))
        .order_by(keypairs.c.created_at)
        .limit(1)
    ).first()
    return dict(user), kp


async def _verify(ctx: ManagerContext, password: str, stored: str) -> bool:
    """scrypt on a worker thread of its own limiter: logins never hold database threads."""
    return await trio.to_thread.run_sync(verify_password, password, stored, limiter=ctx.kdf_limiter)


def add_auth_routes(app: QuartTrio, ctx: ManagerContext) -> None:
    @app.route("/auth/authorize", methods=["POST"])
    async def authorize() -> Response:
        body = _object(await json_body())
        kind = body.get("type", "keypair")
        if kind != "keypair":
            raise InvalidAPIParameters(f"type: invalid value {kind!r}; expected 'keypair'")
        domain = body.get("domain") or "default"
        if not isinstance(domain, str):
            raise InvalidAPIParameters(f"domain: invalid value {domain!r}; expected a string")
        username, password = _string(body, "username"), _string(body, "password")
        user, kp = await ctx.db.run(lambda c: _load_login(c, username))
        matched = await _verify(ctx, password, user["password"] if user else _DUMMY_HASH)
        if user is None or not matched or user["domain_name"] != domain:
            raise AuthenticationFailed(
                f"no user {username!r} with that password in domain {domain!r}"
            )
        if user["status"] != "active":
            raise AuthenticationFailed(
                f"user {username!r} is {user['status']}; ask an administrator"
            )
        if kp is None:
            raise AuthenticationFailed(
                f"user {username!r} has no active keypair; ask an administrator"
            )
        data = {
            "access_key": kp.access_key,
            "secret_key": kp.secret_key,
            "role": user["role"],
            "status": user["status"],
        }
        return json_response({"data": data})

    @app.route("/auth/role", methods=["GET"])
    async def role() -> Response:
        caller: Caller = g.caller
        result: dict[str, str] = {
            "global_role": "superadmin" if caller.is_superadmin else "user",
            "domain_role": "admin" if caller.role in ("superadmin", "admin") else "user",
        }
        group = request.args.get("group")
        if group is not None:

            def _member(c: sa.Connection) -> bool:
                q = sa.select(projects.c.id).where(
                    sa.or_(projects.c.id == group, projects.c.name == group),
                    projects.c.domain_name == caller.domain,
                )
                if not caller.is_superadmin:
                    q = q.join(user_projects, user_projects.c.project_id == projects.c.id).where(
                        user_projects.c.user_uuid == caller.user_uuid
                    )
                return c.execute(q).first() is not None

            if not await ctx.db.run(_member):
                raise NotFound(f"group {group!r}: no such project of yours in {caller.domain!r}")
            result["group_role"] = "admin" if caller.role in ("superadmin", "admin") else "user"
        return json_response(result)

    @app.route("/auth/update-password", methods=["POST"])
    async def update_password() -> Response:
        caller: Caller = g.caller
        body = _object(await json_body())
        old = _string(body, "old_password")
        new, again = _string(body, "new_password"), _string(body, "new_password2")
        if new != again:
            raise InvalidAPIParameters("new_password2 differs from new_password; type it again")
        if len(new) < _MIN_PASSWORD:
            raise InvalidAPIParameters(
                f"new_password: too short; expected at least {_MIN_PASSWORD} characters"
            )
        if caller.user_uuid is None:
            raise InvalidAPIParameters(
                f"keypair {caller.access_key} belongs to no user account, so it has no password"
            )
        uid = caller.user_uuid
        stored = await ctx.db.run(
            lambda c: c.execute(sa.select(users.c.password).where(users.c.uuid == uid)).scalar_one()
        )
        if not await _verify(ctx, old, stored):
            raise AuthenticationFailed("old_password does not match the current password")
        hashed = await trio.to_thread.run_sync(hash_password, new, limiter=ctx.kdf_limiter)

        def _update(c: sa.Connection) -> None:
            # Only if it is still the password just checked (a concurrent change wins).
            c.execute(
                users.update()
                .where(users.c.uuid == uid, users.c.password == stored)
                .values(password=hashed, need_password_change=False)
            )

        await ctx.db.run(_update)
        return json_response({})
