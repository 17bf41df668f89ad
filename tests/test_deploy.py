"""The systemd units in deploy/: they parse, carry what every role needs, and pass systemd-analyze."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from backendai.config import config_keys, load_config
from backendai.lifecycle import EXIT_CONFIG

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
SERVICE = DEPLOY / "backendai@.service"
TARGET = DEPLOY / "backendai.target"
AGENT_DROP_IN = DEPLOY / "backendai@agent.service.d" / "docker.conf"
README = DEPLOY / "README.md"
ROLES = ("all", "manager", "agent", "storage", "appproxy")


def ini(path: Path) -> configparser.ConfigParser:
    """The unit as configparser sees it (systemd repeats keys: the last one wins here)."""
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text(), source=str(path))
    return parser


def directives(path: Path) -> dict[str, dict[str, list[str]]]:
    """Every value of every key, in order, as systemd reads repeated keys."""
    out: dict[str, dict[str, list[str]]] = {}
    section = ""
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line.strip("[]")
            out.setdefault(section, {})
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not a key=value line: {line!r}"
        out[section].setdefault(key.strip(), []).append(value.strip())
    return out


def seconds(value: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|sec|min)?", value)
    assert m, value
    return float(m.group(1)) * (60 if m.group(2) == "min" else 1)


@pytest.mark.parametrize("path", [SERVICE, TARGET, AGENT_DROP_IN])
def test_units_parse_as_ini(path: Path) -> None:
    parser = ini(path)
    assert parser.sections()
    assert set(parser.sections()) <= {"Unit", "Service", "Install"}


def test_service_runs_the_instance_role_as_a_notify_service() -> None:
    service = ini(SERVICE)["Service"]
    assert service["Type"] == "notify"
    exec_start = service["ExecStart"]
    assert exec_start.startswith("/"), "systemd wants an absolute path"
    assert exec_start.split()[0].endswith("/backendai")
    assert exec_start.split()[1:] == [
        "run",
        "--role=%i",
        "--config",
        "/etc/backendai/backendai.toml",
    ]


def test_service_stops_after_the_shutdown_deadline() -> None:
    shutdown_timeout = load_config(None, env={}).manager.shutdown_timeout
    stop = seconds(ini(SERVICE)["Service"]["TimeoutStopSec"])
    assert shutdown_timeout < stop <= shutdown_timeout + 30


def test_service_restarts_on_failure_but_not_on_a_config_error() -> None:
    service = ini(SERVICE)["Service"]
    assert service["Restart"] == "on-failure"
    assert str(EXIT_CONFIG) in service["RestartPreventExitStatus"].split()
    assert seconds(service["RestartSec"]) > 0


def test_service_runs_as_the_backendai_user_with_its_state_dir() -> None:
    d = directives(SERVICE)["Service"]
    assert d["User"] == ["backendai"]
    assert d["Group"] == ["backendai"]
    assert d["StateDirectory"] == ["backendai"]
    # The default data_dir ($XDG_DATA_HOME/backendai) lands in the StateDirectory.
    assert "XDG_DATA_HOME=/var/lib" in d["Environment"]
    assert d["NoNewPrivileges"] == ["yes"]
    assert d["KillMode"] == ["mixed"]
    # Only the agent gets the docker group, from its drop-in.
    assert "SupplementaryGroups" not in d


def test_agent_drop_in_grants_docker_access() -> None:
    assert directives(AGENT_DROP_IN)["Service"] == {"SupplementaryGroups": ["docker"]}


def test_service_and_target_are_tied_together() -> None:
    service = directives(SERVICE)
    assert service["Unit"]["PartOf"] == ["backendai.target"]
    assert service["Install"]["WantedBy"] == ["backendai.target"]
    assert service["Install"]["DefaultInstance"] == ["all"]
    assert directives(TARGET)["Install"]["WantedBy"] == ["multi-user.target"]


def test_every_role_is_documented() -> None:
    from backendai.roles import ROLES as roles

    assert set(roles) == set(ROLES)
    unit_text = SERVICE.read_text()
    readme = README.read_text()
    for role in ROLES:
        assert role in unit_text
        assert f"backendai@{role}" in readme


def test_documented_config_keys_exist() -> None:
    keys = {f"{s}.{k}" for s, section in config_keys().items() for k in section}
    # section.key, but not a file name such as backendai@manager.service or agent.env.
    pattern = re.compile(r"(?<![@/\w.-])(?:" + "|".join(config_keys()) + r")\.[a-z_]+\b(?!\.)")
    files = {"service", "target", "env", "toml", "conf", "db", "json"}
    for path in (SERVICE, README):
        for found in pattern.findall(path.read_text()):
            if found.rpartition(".")[2] not in files:
                assert found in keys, f"{path.name} names {found}, which is not a config key"
    readme = README.read_text()
    for key in (
        "bus.kind",
        "bus.redis_url",
        "manager.db_url",
        "cluster.secret",
        "agent.advertised_host",
        "manager.shutdown_timeout",
    ):
        assert key in readme


def test_readme_toml_snippets_are_valid_config(tmp_path: Path) -> None:
    snippets = re.findall(r"```toml\n(.*?)```", README.read_text(), re.DOTALL)
    assert len(snippets) >= 5
    for i, snippet in enumerate(snippets):
        path = tmp_path / f"snippet{i}.toml"
        path.write_text(snippet)
        load_config(path, env={})


def test_readme_environment_overrides_are_valid(tmp_path: Path) -> None:
    names = set(re.findall(r"\bBACKENDAI_[A-Z_]+__[A-Z_]+\b", README.read_text()))
    assert "BACKENDAI_CLUSTER__SECRET" in names
    keys = config_keys()
    for name in names:
        section, _, key = name.removeprefix("BACKENDAI_").lower().partition("__")
        assert key in keys.get(section, {}), f"README names {name}, which overrides no key"


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed; the units were only parsed as INI")
    # verify checks that ExecStart's program exists: point it at one that does.
    program = shutil.which("true") or "/bin/true"
    text = SERVICE.read_text()
    exec_start = ini(SERVICE)["Service"]["ExecStart"]
    (tmp_path / SERVICE.name).write_text(text.replace(exec_start.split()[0], program))
    shutil.copy(TARGET, tmp_path / TARGET.name)
    drop_in = tmp_path / AGENT_DROP_IN.parent.name
    drop_in.mkdir()
    shutil.copy(AGENT_DROP_IN, drop_in / AGENT_DROP_IN.name)
    units = [f"backendai@{role}.service" for role in ROLES] + [TARGET.name]
    result = subprocess.run(
        [analyze, "verify", "--man=no", *units],
        env={"SYSTEMD_UNIT_PATH": f"{tmp_path}:", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # verify reports unknown keys and bad values as warnings ("..., ignoring") with exit 0.
    ours = [line for line in output.splitlines() if str(tmp_path) in line or "backendai" in line]
    assert ours == []
