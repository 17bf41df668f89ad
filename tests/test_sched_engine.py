"""The planner (backendai.sched.engine) with its sequencers, validators and preemption."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from backendai.sched import (
    AgentSnapshot,
    Dependency,
    OneShotAdapter,
    PendingSession,
    RunningSession,
)

from .sched_fixtures import agent, plan, running, session, started, waits

ONE_CPU_EACH = [agent("a", cpu=2), agent("b", cpu=2)]


@pytest.mark.parametrize(
    ("sequencer", "expected"),
    [
        pytest.param("fifo", ["s1", "s2", "s3", "s4"], id="fifo"),
        pytest.param("lifo", ["s5", "s4", "s3", "s2"], id="lifo"),
    ],
)
def test_fifo_and_lifo_order(sequencer: str, expected: list[str]) -> None:
    pending = [session(f"s{i}", float(i)) for i in (3, 1, 5, 2, 4)]
    assert started(plan(ONE_CPU_EACH, pending, sequencer=sequencer)) == expected


def test_fifo_skips_what_does_not_fit_without_head_of_line_blocking() -> None:
    pending = [session("big", 1, cpu=3), session("small", 2)]
    p = plan(ONE_CPU_EACH, pending)
    assert started(p) == ["small"]
    check, detail = waits(p)["big"]
    assert check == "resources"
    assert detail.startswith("no agent can fit cpu=3 mem=1g now; largest free: cpu=2 mem=8g")


def test_head_of_line_blocking_holds_back_later_sessions() -> None:
    pending = [session("big", 1, cpu=3), session("small", 2)]
    p = plan(ONE_CPU_EACH, pending, options={"hol_blocking": True})
    assert started(p) == []
    check, detail = waits(p)["small"]
    assert check == "hol-blocking"
    assert "waiting behind session name-big (big)" in detail


def test_a_validator_refusal_does_not_block_the_line() -> None:
    pending = [session("later", 1, starts_at=5000.0), session("now", 2)]
    p = plan(ONE_CPU_EACH, pending, options={"hol_blocking": True})
    assert started(p) == ["now"]
    assert waits(p)["later"][0] == "starts-at"


def test_priority_orders_before_the_sequencer() -> None:
    pending = [session("old", 1), session("urgent", 9, priority=5), session("mid", 5, priority=1)]
    assert started(plan([agent("a", cpu=2)], pending)) == ["urgent", "mid"]


def test_drf_serves_the_user_with_the_lowest_dominant_share() -> None:
    # u1 already holds 2 of the 8 cpus; u2 holds nothing.
    run = [running("r1", "a", user="u1", cpu=2, preemptible=False)]
    pending = [session("u1-a", 1, user="u1"), session("u1-b", 2, user="u1")]
    pending += [session("u2-a", 3, user="u2"), session("u2-b", 4, user="u2")]
    pending += [session("u2-c", 5, user="u2")]
    p = plan([agent("a"), agent("b")], pending, sequencer="drf", run=run)
    # u2 catches up to u1's two cpus, then they alternate by share (ties: older session).
    assert started(p) == ["u2-a", "u2-b", "u1-a", "u2-c", "u1-b"]


def test_fair_share_uses_decayed_history() -> None:
    pending = [session("u1-a", 1, user="u1"), session("u2-a", 2, user="u2")]
    p = plan([agent("a", cpu=1)], pending, sequencer="fair-share", history={"u1": 0.0, "u2": 0.5})
    assert started(p) == ["u1-a"]
    p = plan([agent("a", cpu=1)], pending, sequencer="fair-share", history={"u1": 0.6, "u2": 0.5})
    assert started(p) == ["u2-a"]


def test_dependencies_wait_start_or_cancel() -> None:
    ok = Dependency("d1", "prep", "TERMINATED", 0, 500.0)
    live = Dependency("d2", "train", "RUNNING")
    bad = Dependency("d3", "fetch", "TERMINATED", 3, 600.0)
    pending = [
        session("ready", 1, deps=[ok]),
        session("waiting", 2, deps=[ok, live]),
        session("doomed", 3, deps=[bad]),
    ]
    p = plan(ONE_CPU_EACH, pending)
    assert started(p) == ["ready"]
    assert waits(p)["waiting"] == (
        "dependencies",
        "waiting for 1 dependencies to finish: train (RUNNING)",
    )
    [cancel] = [d for d in p.decisions if d.action == "cancel"]
    assert cancel.session.id == "doomed"
    assert cancel.detail == (
        "dependency fetch (d3) ended TERMINATED with exit code 3; this session needs it "
        "to finish successfully, so it cannot start"
    )


def test_pending_timeout_counts_from_the_later_of_creation_start_and_dependencies() -> None:
    done = Dependency("d", "prep", "TERMINATED", 0, 950.0)
    pending = [
        session("old", 100),
        session("delayed", 100, starts_at=900.0),
        session("after-dep", 100, deps=[done]),
        session("dep-running", 100, deps=[Dependency("e", "x", "RUNNING")]),
    ]
    p = plan([agent("a", cpu=0.5)], pending, now=1000.0, pending_timeout=200.0)
    cancelled = {d.session.id: d.detail for d in p.decisions if d.action == "cancel"}
    assert cancelled == {"old": "pending for 900 s, over the pending timeout of 200 s"}


def test_group_pending_timeout_overrides_the_manager_default() -> None:
    p = plan(
        [agent("a", cpu=0.5)],
        [session("s", 900)],
        pending_timeout=0.0,
        options={"pending_timeout": 50},
    )
    assert [d.action for d in p.decisions] == ["cancel"]


@pytest.mark.parametrize(
    ("limits", "check", "detail"),
    [
        pytest.param(
            {"max_concurrent_sessions": 1},
            "concurrency",
            "keypair u1 has 1 of at most 1 concurrent sessions in resource group 'g' "
            "(limit from resource group 'g' option keypair_limits)",
            id="concurrency",
        ),
        pytest.param(
            {"max_pending_sessions": 1},
            "pending-limit",
            "keypair u1 has 2 pending sessions in resource group 'g'; only the 1 oldest are "
            "scheduled (limit from resource group 'g' option keypair_limits)",
            id="pending-limit",
        ),
        pytest.param(
            {"total_resource_slots": {"cpu": 1.5}},
            "quota",
            "keypair u1 holds cpu=1 mem=1g in resource group 'g'; with cpu=1 mem=1g more it would "
            "exceed its quota cpu=1.5 on cpu (limit from resource group 'g' option keypair_limits)",
            id="quota",
        ),
    ],
)
def test_keypair_limits_from_group_options(
    limits: dict[str, object], check: str, detail: str
) -> None:
    pending = [session("first", 1), session("second", 2)]
    p = plan(ONE_CPU_EACH, pending, options={"keypair_limits": limits})
    assert started(p) == ["first"]
    assert waits(p)["second"] == (check, detail)


def test_limits_count_sessions_already_running() -> None:
    run = [running("r", "a", user="u1", preemptible=False)]
    p = plan(
        ONE_CPU_EACH,
        [session("s", 1)],
        run=run,
        options={"keypair_limits": {"max_concurrent_sessions": 1}},
    )
    assert waits(p)["s"][0] == "concurrency"


def test_validators_can_be_chosen_per_group() -> None:
    pending = [session("later", 1, starts_at=5000.0)]
    p = plan(ONE_CPU_EACH, pending, options={"validators": ["dependencies"]})
    assert started(p) == ["later"]


def test_preemption_terminates_the_fewest_lowest_priority_newest_sessions() -> None:
    run = [
        running("old-low", "a", cpu=2, priority=0, started=10.0),
        running("new-low", "b", cpu=2, priority=0, started=20.0),
        running("mid", "b", cpu=2, priority=1, started=30.0),
        running("precious", "a", cpu=2, priority=0, preemptible=False),
    ]
    urgent = session("urgent", 100, cpu=2, priority=5)
    p = plan([agent("a"), agent("b")], [urgent], run=run, options={"preemption": "terminate"})
    assert [(x.victim.id, x.by.id, x.mode) for x in p.preemptions] == [
        ("new-low", "urgent", "terminate")
    ]
    check, detail = waits(p)["urgent"]
    assert check == "preemption"
    assert detail.startswith(
        "preempting 1 lower-priority session(s) to make room: new-low (priority 0)"
    )


def test_preemption_waits_for_sessions_already_terminating() -> None:
    run = [running("going", "a", cpu=4, status="TERMINATING"), running("low", "b", cpu=4)]
    p = plan(
        [agent("a"), agent("b")],
        [session("s", 1, cpu=2, priority=1)],
        run=run,
        options={"preemption": "requeue"},
    )
    assert p.preemptions == []
    assert waits(p)["s"][1].startswith("waiting for 1 terminating session(s)")


def test_no_preemption_when_it_is_off_or_cannot_help() -> None:
    run = [running("low", "a", cpu=4)]
    p = plan([agent("a")], [session("s", 1, cpu=2, priority=1)], run=run)
    assert (p.preemptions, waits(p)["s"][0]) == ([], "resources")
    run = [running("same", "a", cpu=4, priority=1)]
    p = plan(
        [agent("a")],
        [session("s", 1, cpu=2, priority=1)],
        run=run,
        options={"preemption": "terminate"},
    )
    assert (p.preemptions, waits(p)["s"][0]) == ([], "resources")


def test_preemption_frees_a_whole_node_for_a_single_node_cluster() -> None:
    run = [running("l1", "a", cpu=2), running("l2", "a", cpu=2), running("l3", "b", cpu=2)]
    big = session("big", 1, cpu=2, size=2, priority=3)
    p = plan([agent("a"), agent("b")], [big], run=run, options={"preemption": "terminate"})
    # Freeing node b takes one victim; node a would take two.
    assert [x.victim.id for x in p.preemptions] == ["l3"]


class Newest:
    """A one-shot scheduler: the newest pending session, on the agent with the most free cpu."""

    name = "newest"

    def __init__(self) -> None:
        self.calls = 0

    def pick(
        self,
        running: Sequence[RunningSession],
        pending: Sequence[PendingSession],
        agents: Sequence[AgentSnapshot],
    ) -> tuple[str, str | Mapping[str, str]] | None:
        self.calls += 1
        if not pending:
            return None
        s = max(pending, key=lambda p: p.created_at)
        a = max(agents, key=lambda a: (a.free["cpu"], a.id))
        return s.id, a.id


def test_a_one_shot_scheduler_runs_as_a_plugin() -> None:
    from backendai.sched import GroupOptions, GroupSnapshot, Plugins, plan_group

    one_shot = OneShotAdapter(Newest())
    agents = [agent("a", cpu=2), agent("b", cpu=3)]
    pending = [session(f"s{i}", float(i)) for i in range(6)]
    g = GroupSnapshot("g", agents, pending, options=GroupOptions())
    p = plan_group(g, Plugins(one_shot, one_shot.selector, []), 1000.0)
    assert [(d.session.id, d.assignments[f"{d.session.id}/0"]) for d in p.started] == [
        ("s5", "b"),
        ("s4", "b"),
        ("s3", "a"),
        ("s2", "b"),
        ("s1", "a"),
    ]
    # Its choice for s0 (an agent with no room) is checked and refused, with the reason.
    assert waits(p)["s0"][1].startswith("no agent can fit cpu=1 mem=1g now")
