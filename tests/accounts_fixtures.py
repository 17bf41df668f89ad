"""Accounts in a running cluster's database: users with keypairs, for role-boundary tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import sqlalchemy as sa
import trio

from backendai.config import Config
from backendai.manager.accounts import create_domain, create_keypair, create_user
from backendai.roles.manager import db_url

__all__ = ["Account", "add_account", "add_domain", "in_db"]

T = TypeVar("T")


@dataclass(frozen=True)
class Account:
    email: str
    password: str
    access_key: str
    secret_key: str


async def in_db(config: Config, fn: Callable[[sa.Connection], T]) -> T:
    """Run *fn* in one transaction on the cluster's database (the source of truth)."""

    def _run() -> T:
        engine = sa.create_engine(db_url(config))
        try:
            with engine.begin() as conn:
                return fn(conn)
        finally:
            engine.dispose()

    return await trio.to_thread.run_sync(_run)


async def add_account(
    config: Config,
    email: str,
    *,
    role: str = "user",
    domain: str = "default",
    status: str = "active",
    rate_limit: int = 0,
) -> Account:
    password = f"pw-{email}"

    def _add(c: sa.Connection) -> Account:
        create_user(c, email, password, role=role, domain=domain, status=status)
        keys = create_keypair(c, email, rate_limit=rate_limit)
        return Account(email, password, keys.access_key, keys.secret_key)

    return await in_db(config, _add)


async def add_domain(config: Config, name: str) -> None:
    await in_db(config, lambda c: create_domain(c, name, resource_groups_=["default"]))
