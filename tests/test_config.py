"""Config loading (backendai.config): defaults, the example file, errors, environment overrides."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from backendai.config import Config, Secret, _coerce, config_keys, load_config
from backendai.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parent.parent / "backendai.toml.example"
# Keys whose default depends on the environment: commented out in the example file.
ENV_DEPENDENT = {("cluster", "data_dir")}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "backendai.toml"
    path.write_text(text)
    return path


# -- defaults and the example file -----------------------------------------------


def test_defaults_load_without_a_file() -> None:
    config = load_config(None, env={})
    assert config == Config()
    assert config.manager.port == 8081
    assert config.bus.kind == "memory"
    assert config.cluster.secret == Secret("")


def test_example_file_loads_and_equals_the_defaults() -> None:
    assert load_config(EXAMPLE, env={}) == Config()


def test_example_file_lists_every_key_and_no_other() -> None:
    parsed = tomllib.loads(EXAMPLE.read_text())
    in_example = {(s, k) for s, keys in parsed.items() for k in keys}
    in_code = {(s, k) for s, keys in config_keys().items() for k in keys}
    assert in_example == in_code - ENV_DEPENDENT
    assert list(parsed) == list(config_keys()), "sections in the order of Config"


def test_example_file_shows_environment_dependent_keys_commented() -> None:
    text = EXAMPLE.read_text()
    for section, key in ENV_DEPENDENT:
        block = text.split(f"[{section}]", 1)[1].split("\n[", 1)[0]
        assert re.search(rf"^# {key} = ", block, re.MULTILINE), f"{section}.{key}"


def test_example_values_are_the_defaults_with_the_same_types() -> None:
    parsed = tomllib.loads(EXAMPLE.read_text())
    for section, keys in config_keys().items():
        for key, default in keys.items():
            if (section, key) in ENV_DEPENDENT:
                continue
            value = parsed[section][key]
            expected = default.reveal() if isinstance(default, Secret) else default
            assert value == expected, f"{section}.{key}"
            assert type(value) is type(expected), f"{section}.{key}: {value!r}"


def test_every_key_in_the_example_has_a_comment_above_it() -> None:
    lines = EXAMPLE.read_text().splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^#? ?[a-z_]+ = ", line) and not line.startswith("# "):
            assert lines[i - 1].startswith("# "), f"line {i + 1} ({line!r}) has no comment"


# -- errors from the file ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        pytest.param(
            "[managr]\nport = 1\n",
            [":managr: unknown section", "known sections: agent, appproxy, bus, cluster"],
            id="unknown-section",
        ),
        pytest.param(
            "manager = 3\n",
            [":manager: expected a table, got 3"],
            id="section-not-a-table",
        ),
        pytest.param(
            "[manager]\nprot = 8081\n",
            [":manager.prot: unknown key", "known keys: ", "port"],
            id="unknown-key",
        ),
        pytest.param(
            '[manager]\nport = "8081"\n',
            [":manager.port: invalid value '8081'; expected an integer"],
            id="string-for-int",
        ),
        pytest.param(
            "[manager]\nport = true\n",
            [":manager.port: invalid value True; expected an integer"],
            id="bool-for-int",
        ),
        pytest.param(
            "[manager]\nport = 80.5\n",
            [":manager.port: invalid value 80.5; expected an integer"],
            id="float-for-int",
        ),
        pytest.param(
            '[manager]\nheartbeat_timeout = "10s"\n',
            [":manager.heartbeat_timeout: invalid value '10s'; expected a number"],
            id="string-for-float",
        ),
        pytest.param(
            "[agent]\nhost = 127\n",
            [":agent.host: invalid value 127; expected a string"],
            id="int-for-string",
        ),
        pytest.param(
            '[bus]\nkind = "kafka"\n',
            [":bus.kind: invalid value 'kafka'; expected one of 'memory', 'redis'"],
            id="bad-literal",
        ),
        pytest.param(
            '[logging]\nlevel = "debug"\n',
            [":logging.level: invalid value 'debug'; expected one of 'DEBUG', 'INFO'"],
            id="literal-is-case-sensitive",
        ),
        pytest.param(
            '[agent]\nnetwork_mode = "macvlan"\n',
            [":agent.network_mode: invalid value 'macvlan'", "'bridge', 'host', 'none'"],
            id="bad-network-mode",
        ),
    ],
)
def test_bad_file_content_names_file_key_value_and_expectation(
    tmp_path: Path, text: str, fragments: list[str]
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    message = str(info.value)
    assert message.startswith(f"{path}:")
    for fragment in fragments:
        assert fragment in message


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("[manager\nport = 1\n", id="unclosed-table"),
        pytest.param("[manager]\nport = \n", id="missing-value"),
        pytest.param("[manager]\nport = 1\nport = 2\n", id="duplicate-key"),
    ],
)
def test_invalid_toml_names_the_file(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=re.escape(f"{path}: not valid TOML: ")):
        load_config(path, env={})


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError, match=re.escape(f"{path}: config file not found")):
        load_config(path, env={})


@pytest.mark.parametrize(
    ("text", "section", "key", "expected"),
    [
        ("[manager]\nport = 9000\n", "manager", "port", 9000),
        # An integer where a number is expected is taken, as a float.
        ("[manager]\nheartbeat_timeout = 5\n", "manager", "heartbeat_timeout", 5.0),
        ('[bus]\nkind = "redis"\n', "bus", "kind", "redis"),
        ('[cluster]\nsecret = "s3cr3t"\n', "cluster", "secret", Secret("s3cr3t")),
        ('[cluster]\ndata_dir = "/srv/bai"\n', "cluster", "data_dir", "/srv/bai"),
        ("[storage]\n", "storage", "port", 6021),
    ],
)
def test_good_file_values(tmp_path: Path, text: str, section: str, key: str, expected: Any) -> None:
    config = load_config(write(tmp_path, text), env={})
    value = getattr(getattr(config, section), key)
    assert value == expected
    assert type(value) is type(expected)


def test_data_dir_default_follows_xdg_data_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert load_config(None, env={}).data_dir == tmp_path / "backendai"


def test_data_dir_expands_the_home_directory(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, '[cluster]\ndata_dir = "~/bai"\n'), env={})
    assert config.data_dir == Path.home() / "bai"


def test_overrides_apply_like_file_content(tmp_path: Path) -> None:
    path = write(tmp_path, '[agent]\nbackend = "docker"\nport = 7000\n')
    config = load_config(path, env={}, overrides={"agent": {"backend": "dummy"}})
    assert (config.agent.backend, config.agent.port) == ("dummy", 7000)


# -- environment overrides ----------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "section", "key", "expected"),
    [
        ({"BACKENDAI_MANAGER__PORT": "8090"}, "manager", "port", 8090),
        ({"BACKENDAI_MANAGER__HEARTBEAT_TIMEOUT": "2.5"}, "manager", "heartbeat_timeout", 2.5),
        ({"BACKENDAI_MANAGER__HEARTBEAT_TIMEOUT": "7"}, "manager", "heartbeat_timeout", 7.0),
        ({"BACKENDAI_AGENT__CPU": "1e1"}, "agent", "cpu", 10.0),
        ({"BACKENDAI_BUS__KIND": "redis"}, "bus", "kind", "redis"),
        ({"BACKENDAI_AGENT__MEM": "4g"}, "agent", "mem", "4g"),
        ({"BACKENDAI_AGENT__ID": ""}, "agent", "id", ""),
        ({"BACKENDAI_CLUSTER__SECRET": "from-env"}, "cluster", "secret", Secret("from-env")),
        # Names that are not ours (no section__key form) are left alone.
        ({"BACKENDAI_TEST_REDIS_URL": "redis://x"}, "bus", "redis_url", "redis://127.0.0.1:6379/0"),
        ({"BACKEND_ENDPOINT": "http://x"}, "manager", "port", 8081),
    ],
)
def test_environment_overrides(env: dict[str, str], section: str, key: str, expected: Any) -> None:
    value = getattr(getattr(load_config(None, env=env), section), key)
    assert value == expected
    assert type(value) is type(expected)


def test_environment_wins_over_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[manager]\nport = 9000\nhost = '0.0.0.0'\n")
    config = load_config(path, env={"BACKENDAI_MANAGER__PORT": "8090"})
    assert (config.manager.host, config.manager.port) == ("0.0.0.0", 8090)


def test_environment_is_read_from_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKENDAI_APPPROXY__PORT", "10300")
    assert load_config(None).appproxy.port == 10300


@pytest.mark.parametrize(
    ("env", "fragments"),
    [
        pytest.param(
            {"BACKENDAI_MANAGER__PORT": "eighty"},
            ["environment BACKENDAI_MANAGER__PORT: invalid value 'eighty'; expected an integer"],
            id="bad-int",
        ),
        pytest.param(
            {"BACKENDAI_MANAGER__PORT": "80.0"},
            ["environment BACKENDAI_MANAGER__PORT: invalid value '80.0'; expected an integer"],
            id="float-for-int",
        ),
        pytest.param(
            {"BACKENDAI_MANAGER__LEASE_TIMEOUT": "15s"},
            [
                "environment BACKENDAI_MANAGER__LEASE_TIMEOUT: invalid value '15s'; expected a number"
            ],
            id="bad-float",
        ),
        pytest.param(
            {"BACKENDAI_BUS__KIND": "kafka"},
            ["environment BACKENDAI_BUS__KIND: invalid value 'kafka'", "'memory', 'redis'"],
            id="bad-literal",
        ),
        pytest.param(
            {"BACKENDAI_MANAGER__PROT": "8090"},
            ["environment BACKENDAI_MANAGER__PROT: unknown key manager.prot", "known keys: "],
            id="unknown-key",
        ),
        pytest.param(
            {"BACKENDAI_MANGER__PORT": "8090"},
            ["environment BACKENDAI_MANGER__PORT: unknown section manger", "known sections: "],
            id="unknown-section",
        ),
    ],
)
def test_bad_environment_names_the_variable(env: dict[str, str], fragments: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, env=env)
    for fragment in fragments:
        assert fragment in str(info.value)


# No config key is a boolean yet; the parsing rule for one is checked on the coercion itself.
@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", True), ("true", True), ("TRUE", True), ("0", False), ("false", False)],
)
def test_environment_booleans(raw: str, expected: bool) -> None:
    assert _coerce(bool, raw, "environment BACKENDAI_X__Y") is expected


@pytest.mark.parametrize("raw", ["yes", "", "2", "on"])
def test_environment_bad_boolean(raw: str) -> None:
    with pytest.raises(ConfigError, match=r"environment BACKENDAI_X__Y: .*expected a boolean"):
        _coerce(bool, raw, "environment BACKENDAI_X__Y")


def test_file_booleans_must_be_toml_booleans() -> None:
    assert _coerce(bool, True, "f:s.k") is True
    with pytest.raises(ConfigError, match=r"f:s\.k: invalid value 'true'; expected a boolean"):
        _coerce(bool, "true", "f:s.k")


# -- secrets --------------------------------------------------------------------------

SECRET = "hunter2-very-secret"


def test_secret_never_shows_its_value() -> None:
    secret = Secret(SECRET)
    for shown in (repr(secret), str(secret), f"{secret}", f"{secret!r}", format(secret)):
        assert SECRET not in shown
    assert secret.reveal() == SECRET
    assert secret
    assert not Secret("")
    assert secret == Secret(SECRET)
    assert secret != Secret("other")
    assert secret != SECRET
    assert len({secret, Secret(SECRET)}) == 1


def test_config_repr_hides_the_secret(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, f'[cluster]\nsecret = "{SECRET}"\n'), env={})
    assert config.cluster.secret.reveal() == SECRET
    assert SECRET not in repr(config)
    assert SECRET not in str(dataclasses.asdict(config))


@pytest.mark.parametrize(
    "text",
    [
        "[cluster]\nsecret = 1234567890\n",
        f'[cluster]\nsecret = ["{SECRET}"]\n',
        f'[cluster]\nsecret = {{ value = "{SECRET}" }}\n',
    ],
)
def test_a_bad_secret_is_not_shown_in_the_error(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    secret_value = tomllib.loads(text)["cluster"]["secret"]
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    message = str(info.value)
    assert f"{path}:cluster.secret: invalid value <hidden>; expected a string" == message
    assert str(secret_value) not in message
    assert SECRET not in message


def test_environment_secret_is_hidden_in_config_repr() -> None:
    config = load_config(None, env={"BACKENDAI_CLUSTER__SECRET": SECRET})
    assert config.cluster.secret.reveal() == SECRET
    assert SECRET not in repr(config)
