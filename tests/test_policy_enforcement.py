"""Keypair resource policies enforced: by the scheduler, and by ending sessions that outlive them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import trio

from backendai.client.api import APIClient
from backendai.db.tables import keypairs
from backendai.manager.policies import create_keypair_policy
from backendai.manager.policy_limits import Held, group_limits
from backendai.manager.policy_reaper import overdue
from backendai.sched import KeypairLimits, ResourceSlots
from tests.accounts_fixtures import Account, add_account, in_db
from tests.cluster import Cluster, cluster_config, open_cluster, wait_status

IMAGE = "backendai/python:3.11"


@pytest.mark.parametrize(
    ("now", "last", "idle", "life", "expected"),
    [
        (100.0, None, 0, 0, None),  # no limits
        (100.0, None, 60, 0, None),  # started at 50: idle 50 s < 60
        (110.0, None, 60, 0, "idle-timeout"),
        (110.0, 90.0, 60, 0, None),  # activity at 90 resets the idle clock
        (150.0, 90.0, 60, 0, "idle-timeout"),
        (150.0, 149.0, 60, 100, "max-session-lifetime"),  # busy, but past its lifetime
        (149.0, 148.0, 0, 100, None),
    ],
)
def test_overdue(
    now: float, last: float | None, idle: float, life: float, expected: str | None
) -> None:
    assert overdue(now, 50.0, last, idle, life) == expected


def test_policy_limits_count_other_groups_and_keep_the_tighter_limit() -> None:
    policy = KeypairLimits(
        max_concurrent_sessions=3,
        max_pending_sessions=None,
        total_resource_slots={"cpu": Decimal(4)},
        source="keypair resource policy 'p'",
    )
    group_option = KeypairLimits(max_concurrent_sessions=5, max_pending_sessions=2, source="g-opt")
    held = {"AK": {"gpu": Held(live=2, pending=1, slots=ResourceSlots.parse({"cpu": 3}))}}
    limits = group_limits("cpu", group_option, {"AK": policy}, held)("AK")
    assert limits.max_concurrent_sessions == 1  # 3 by policy, 2 used in "gpu"
    assert limits.max_pending_sessions == 2  # the group's own option is tighter
    assert limits.total_resource_slots == {"cpu": Decimal(1)}
    assert "keypair resource policy 'p'" in limits.source
    assert "other resource groups" in limits.source
    # In "gpu" itself nothing elsewhere counts; a keypair without a policy gets the option.
    assert (
        group_limits("gpu", group_option, {"AK": policy}, held)("AK").max_concurrent_sessions == 3
    )
    assert group_limits("gpu", group_option, {"AK": policy}, held)("BK") == group_option


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with open_cluster(cluster_config(tmp_path)) as c:
        yield c


async def _with_policy(cluster: Cluster, who: Account, name: str, fields: dict[str, Any]) -> None:
    def apply(c: sa.Connection) -> None:
        create_keypair_policy(c, name, fields)
        c.execute(
            keypairs.update()
            .where(keypairs.c.access_key == who.access_key)
            .values(resource_policy=name)
        )

    await in_db(cluster.config, apply)


async def test_scheduler_holds_sessions_beyond_the_policy_until_room_frees(
    cluster: Cluster,
) -> None:
    ann = await add_account(cluster.config, "ann@example.org")
    await _with_policy(cluster, ann, "one-at-a-time", {"max_concurrent_sessions": 1})
    async with APIClient(cluster.endpoint, ann.access_key, ann.secret_key) as api:
        await api.create_session(IMAGE, "first-job", enqueue_only=True)
        await wait_status(api, "first-job", "RUNNING")
        await api.create_session(IMAGE, "second-job", enqueue_only=True)
        with trio.fail_after(15):
            while True:  # polling the manager: the scheduler records why it waits
                info = await api.get_session("second-job")
                if info["pendingReason"]:
                    break
                await trio.sleep(0.1)
        assert info["status"] == "PENDING"
        assert "concurrency" in info["pendingReason"]
        assert "keypair resource policy 'one-at-a-time'" in info["pendingReason"]
        # The superadmin, under the default policy, is not held back meanwhile.
        await cluster.api.create_session(IMAGE, "root-job")
        await api.destroy_session("first-job")
        await wait_status(api, "second-job", "RUNNING")


async def test_idle_and_lifetime_limits_end_sessions_with_their_reason(cluster: Cluster) -> None:
    idle = await add_account(cluster.config, "idle@example.org")
    old = await add_account(cluster.config, "old@example.org")
    await _with_policy(cluster, idle, "short-idle", {"idle_timeout": 1})
    await _with_policy(cluster, old, "short-life", {"max_session_lifetime": 2})
    async with (
        APIClient(cluster.endpoint, idle.access_key, idle.secret_key) as api_idle,
        APIClient(cluster.endpoint, old.access_key, old.secret_key) as api_old,
    ):
        await api_idle.create_session(IMAGE, "idle-job")
        await api_old.create_session(IMAGE, "old-job")
        idled = await wait_status(api_idle, "idle-job", "TERMINATED", deadline=30)
        aged = await wait_status(api_old, "old-job", "TERMINATED", deadline=30)
    assert idled["statusInfo"] == "idle-timeout"
    assert aged["statusInfo"] == "max-session-lifetime"
    # A session under the default policy (no limits) keeps running.
    await cluster.api.create_session(IMAGE, "root-job")
    await trio.sleep(3)  # longer than both limits above; nothing to await for "nothing happens"
    assert (await cluster.api.get_session("root-job"))["status"] == "RUNNING"
