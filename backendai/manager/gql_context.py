"""What every admin GraphQL resolver gets, and the permission checks they share."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from graphql import GraphQLResolveInfo

from ..errors import PermissionDenied
from .api import Caller

__all__ = ["GqlContext", "Info", "domain_scope", "need_admin", "need_superadmin"]


@dataclass
class GqlContext:
    conn: sa.Connection
    caller: Caller
    default_rate_limit: int = 0


Info = GraphQLResolveInfo[GqlContext]


def need_superadmin(ctx: GqlContext, what: str) -> None:
    if not ctx.caller.is_superadmin:
        raise PermissionDenied(
            f"{what}: only a superadmin may do this "
            f"(keypair {ctx.caller.access_key} is {ctx.caller.role})"
        )


def need_admin(ctx: GqlContext, what: str) -> None:
    if ctx.caller.role not in ("superadmin", "admin"):
        raise PermissionDenied(
            f"{what}: only an administrator may do this (keypair {ctx.caller.access_key} is user)"
        )


def domain_scope(ctx: GqlContext, what: str, domain_name: str | None) -> str | None:
    """The domain an admin query may cover: any for a superadmin, the admin's own otherwise."""
    need_admin(ctx, what)
    if ctx.caller.is_superadmin:
        return domain_name
    if domain_name is not None and domain_name != ctx.caller.domain:
        raise PermissionDenied(
            f"{what}: domain {domain_name!r} is outside {ctx.caller.domain!r}, "
            f"the only domain admin {ctx.caller.access_key} manages"
        )
    return ctx.caller.domain
