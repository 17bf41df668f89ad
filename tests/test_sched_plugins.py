"""Scheduler plugins from Python entry points: a package installed beside ours adds a
sequencer (here a one-shot scheduler), an agent selector and a validator by name."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from backendai.errors import ConfigError
from backendai.sched import (
    GroupOptions,
    GroupSnapshot,
    OneShotAdapter,
    get_agent_selector,
    get_sequencer,
    get_validator,
    known_agent_selectors,
    known_sequencers,
    known_validators,
    plan_group,
    resolve_plugins,
)

from .sched_fixtures import agent, session

PLUGIN = '''
from backendai.sched import Verdict


class Newest:
    """One-shot: the newest pending session, on the agent with the most free cpu."""

    name = "newest-first"

    def pick(self, running, pending, agents):
        if not pending:
            return None
        s = max(pending, key=lambda p: p.created_at)
        return s.id, max(agents, key=lambda a: (a.free["cpu"], a.id)).id


class HighestId:
    name = "highest-id"

    def select(self, request, candidates):
        return max((a.id for a in candidates), default=None)


class NoOddIds:
    name = "no-odd-ids"

    def check(self, session, ctx):
        if int(session.id[1:]) % 2:
            return Verdict(self.name, f"session {session.id} has an odd id")
        return None


class Broken:
    name = "broken"

    def __init__(self):
        raise RuntimeError("cannot start")
'''


@pytest.fixture
def plugin_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An installed distribution (a module and its .dist-info) that declares entry points."""
    (tmp_path / "sched_plugin_demo.py").write_text(textwrap.dedent(PLUGIN))
    info = tmp_path / "sched_plugin_demo-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: sched-plugin-demo\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[backendai.sequencers]\nnewest-first = sched_plugin_demo:Newest\n"
        "broken = sched_plugin_demo:Broken\n\n"
        "[backendai.agent_selectors]\nhighest-id = sched_plugin_demo:HighestId\n\n"
        "[backendai.validators]\nno-odd-ids = sched_plugin_demo:NoOddIds\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))


@pytest.mark.usefixtures("plugin_package")
def test_plugins_are_found_by_name() -> None:
    assert "newest-first" in known_sequencers()
    assert "highest-id" in known_agent_selectors()
    assert "no-odd-ids" in known_validators()
    assert isinstance(get_sequencer("newest-first"), OneShotAdapter)
    assert get_agent_selector("highest-id").name == "highest-id"
    assert get_validator("no-odd-ids").name == "no-odd-ids"


@pytest.mark.usefixtures("plugin_package")
def test_a_group_runs_on_plugins() -> None:
    pending = [session(f"s{i}", float(i)) for i in range(4)]
    agents = [agent("a", cpu=1), agent("b", cpu=1), agent("c", cpu=1)]
    g = GroupSnapshot(
        "g",
        agents,
        pending,
        options=GroupOptions.parse({"validators": ["no-odd-ids"]}),
        agent_selector="highest-id",
    )
    p = plan_group(g, resolve_plugins(g), 1000.0)
    assert [(d.session.id, d.assignments["s" + d.session.id[1:] + "/0"]) for d in p.started] == [
        ("s0", "c"),
        ("s2", "b"),
    ]
    waits = {d.session.id: d.detail for d in p.decisions if d.action == "wait"}
    assert waits == {"s1": "session s1 has an odd id", "s3": "session s3 has an odd id"}
    one_shot = GroupSnapshot("g", agents, pending, sequencer="newest-first")
    p = plan_group(one_shot, resolve_plugins(one_shot), 1000.0)
    assert [d.session.id for d in p.started] == ["s3", "s2", "s1"]


@pytest.mark.usefixtures("plugin_package")
def test_unknown_and_broken_plugins_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"unknown sequencer 'nope'; known: .*newest-first"):
        get_sequencer("nope")
    with pytest.raises(
        ConfigError, match=r"sequencer 'broken' .* could not be loaded: RuntimeError"
    ):
        get_sequencer("broken")
