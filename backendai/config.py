"""One TOML file parsed once into frozen, typed sections.

Every key of every section is a dataclass field below, with its default; the
file ``backendai.toml.example`` lists them all (a test keeps the two in step).
An unknown section or key, or a value of the wrong type, is a
:class:`~backendai.errors.ConfigError` that names ``file:section.key``, the
value and what was expected.  ``BACKENDAI_<SECTION>__<KEY>`` environment
variables override the file (``BACKENDAI_MANAGER__PORT=8090``).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from .errors import ConfigError

__all__ = [
    "AgentConfig",
    "AppProxyConfig",
    "BusConfig",
    "ClusterConfig",
    "Config",
    "LoggingConfig",
    "ManagerConfig",
    "Secret",
    "StorageConfig",
    "load_config",
]

ENV_PREFIX = "BACKENDAI_"


class Secret:
    """A string that never shows itself in ``repr``/``str`` (so never in a log)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return "Secret('********')" if self._value else "Secret('')"

    __str__ = __repr__


def _default_data_dir() -> str:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local/share")
    return os.path.join(base, "backendai")


@dataclasses.dataclass(frozen=True)
class ClusterConfig:
    # Shared secret for manager<->agent RPC and role-to-role APIs; empty: generated (role=all only).
    secret: Secret = Secret("")  # noqa: RUF009 - Secret is immutable
    # Where roles keep their state (database, credentials, kernel scratch dirs).
    data_dir: str = dataclasses.field(default_factory=_default_data_dir)


@dataclasses.dataclass(frozen=True)
class ManagerConfig:
    host: str = "127.0.0.1"
    port: int = 8081
    # SQLAlchemy URL; empty: SQLite (WAL) at <data_dir>/manager.db.
    db_url: str = ""
    # File the bootstrap superadmin keypair is written to (mode 0600); empty: <data_dir>/credentials.json.
    credentials_file: str = ""
    # Threads that may run database work at once (SQLite serialises writers anyway).
    db_threads: int = 4
    # An agent silent this long is marked LOST.
    heartbeat_timeout: float = 10.0
    # Kernels of an agent LOST this long are given up (TERMINATED, reason agent-lost).
    agent_lost_grace: float = 600.0
    # A session PENDING this long is cancelled (reason pending-timeout); 0 disables.
    pending_timeout: float = 3600.0
    # A kernel launch (SCHEDULED..CREATING, pulls excluded) that takes longer fails (failed-to-start).
    launch_timeout: float = 300.0
    # How long an image pull may take before the kernel fails.
    pull_timeout: float = 1800.0
    # A manager's claim on a launch or termination lapses after this unless renewed.
    lease_timeout: float = 15.0
    # Attempts at launching or terminating a kernel before giving up.
    max_attempts: int = 3
    # A TERMINATING kernel whose agent does not confirm within this is forced TERMINATED.
    terminate_timeout: float = 60.0
    # Period of the safety-net loops (scheduling, reconciliation) when no event hints.
    reconcile_interval: float = 3.0
    # Sessions a scheduling pass starts per transaction; a long pass commits in chunks so
    # API writes interleave.
    schedule_chunk: int = 500
    # Largest upload (POST /session/{id}/upload) the manager relays, in bytes.
    max_upload_bytes: int = 1073741824
    # Upper bound for maxWaitSeconds in POST /session.
    max_wait_limit: float = 600.0
    # Grace period for in-flight requests at shutdown.
    shutdown_timeout: float = 10.0
    # Requests a keypair may make per rate-limit window when its own rate_limit is 0.
    default_rate_limit: int = 30000
    # Length of the sliding rate-limit window, in seconds (X-RateLimit-Window).
    rate_limit_window: float = 900.0
    # The storage proxy's manager-facing API; empty: http://<storage.host>:<storage.port>.
    storage_url: str = ""
    # Seconds an upload or download token handed to a client stays valid.
    transfer_token_ttl: float = 3600.0
    # Seconds an app token from start-service may wait before it is exchanged for a cookie.
    app_token_ttl: float = 120.0
    # Seconds an app proxy may stay silent before no new app is placed on it.
    app_proxy_timeout: float = 60.0


@dataclasses.dataclass(frozen=True)
class AgentConfig:
    # Agent id; empty: the host name.
    id: str = ""
    host: str = "127.0.0.1"
    port: int = 6001
    # Address the manager uses to reach this agent's RPC; empty: host.
    advertised_host: str = ""
    # Compute backend: docker | dummy | local | auto (docker if the engine answers, else local).
    backend: str = "auto"
    resource_group: str = "default"
    heartbeat_interval: float = 3.0
    # Docker network mode for kernel containers: bridge | host | none.
    network_mode: Literal["bridge", "host", "none"] = "bridge"
    # Docker engine URL; empty: DOCKER_HOST or the local socket.
    docker_url: str = ""
    # Threads for blocking Docker calls.
    docker_threads: int = 8
    # CPU cores and memory this agent offers; 0 / empty: detected.
    cpu: float = 0.0
    mem: str = ""
    # Memory kept back for the host when detecting capacity.
    reserved_mem: str = "512m"
    # Seconds a container gets to stop before it is killed.
    stop_timeout: float = 5.0
    # A run (execute) nobody collects for this many seconds is interrupted and forgotten.
    run_idle_timeout: float = 600.0
    # Largest file upload (POST /v1/kernels/{id}/files) the agent accepts, in bytes.
    max_upload_bytes: int = 1073741824
    # Where the hardware topology (NUMA nodes, CPUs, PCI devices) is read: sysfs.
    sysfs_root: str = "/sys"
    # How kernels get CPUs and memory: prefer-single-node | interleaved.
    allocation_policy: Literal["prefer-single-node", "interleaved"] = "prefer-single-node"
    # The slot NVIDIA GPUs are offered as: cuda.device (whole GPUs) | cuda.shares (fractions).
    cuda_slot: Literal["cuda.device", "cuda.shares"] = "cuda.device"
    # Simulated latency of the dummy backend.
    dummy_create_delay: float = 0.2
    dummy_destroy_delay: float = 0.1
    # Simulated download time of one image layer when the dummy backend pulls.
    dummy_pull_delay: float = 0.2


@dataclasses.dataclass(frozen=True)
class BusConfig:
    # memory (one process) | redis.
    kind: Literal["memory", "redis"] = "memory"
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Key prefix of our streams and channels.
    prefix: str = "backendai"
    # Approximate cap of each event stream's length.
    stream_maxlen: int = 100000
    # An anycast event left unacknowledged this long by a dead consumer goes to another.
    claim_timeout: float = 30.0
    # Deliveries of an event whose handler keeps failing before it is dropped (logged).
    max_deliveries: int = 10
    # Seconds to wait for Redis to answer at start.
    connect_timeout: float = 5.0


@dataclasses.dataclass(frozen=True)
class StorageConfig:
    host: str = "127.0.0.1"
    # Port of the manager-facing API (cluster secret; 0: any free port).
    port: int = 6021
    # Port of the client-facing transfer API (uploads, downloads by token; 0: any free port).
    client_port: int = 6022
    # Volumes root; empty: <data_dir>/volumes.
    volumes_dir: str = ""
    # Backend per volume, "name=kind,..." (kinds: vfs, btrfs, or a plugin); unnamed volumes: vfs.
    volume_backends: str = ""
    # URL clients use to reach this proxy for uploads and downloads; empty: http://host:client_port.
    public_url: str = ""
    # Threads that may do disk work (file I/O, scans) at once.
    io_threads: int = 16
    # A transfer connection silent this long (seconds; between requests or mid-body) is closed.
    idle_timeout: float = 120.0
    # An unfinished upload idle this long (seconds) is dropped, releasing the quota it holds.
    upload_expiry: float = 86400.0
    # Flush a finished upload to disk before it appears at its path (whole after a crash).
    sync_uploads: bool = True
    # Owner given to folders and to what the proxy writes, so kernels (this uid) can write
    # in read-write mounts; -1 or a proxy not running as root: files keep the proxy's owner.
    kernel_uid: int = 1000
    # Group of folders and written files (see kernel_uid); -1: the proxy's own.
    kernel_gid: int = 1000


@dataclasses.dataclass(frozen=True)
class AppProxyConfig:
    host: str = "127.0.0.1"
    port: int = 10200
    # Bytes of request head (request line and headers) we read before refusing.
    max_header_bytes: int = 16384
    # Seconds a client has to send the request head.
    header_timeout: float = 10.0
    # Seconds to connect to an app before answering 504.
    connect_timeout: float = 5.0
    # Seconds a kept-alive client connection may idle between requests.
    keepalive_timeout: float = 75.0
    # Open connections to one app instance; beyond this a request gets 503.
    max_connections_per_route: int = 1000
    # PEM certificate chain and key for TLS termination; both empty: plain HTTP.
    tls_cert: str = ""
    # PEM private key of tls_cert.
    tls_key: str = ""
    # How apps are reached: "wildcard" (http://<name>.<domain>:<port>/) or "port" (a port per app).
    mode: Literal["wildcard", "port"] = "wildcard"
    # Wildcard mode: the domain whose subdomains name apps (DNS *.<domain> points at this proxy).
    domain: str = "apps.localhost"
    # Host name in the app URLs handed to users; empty: the listen host.
    public_host: str = ""
    # Port mode: the ports handed to apps, both ends included.
    port_range_start: int = 10201
    port_range_end: int = 10300
    # Address of the route management API (called by managers, authenticated by cluster.secret).
    api_host: str = "127.0.0.1"
    # Port of the route management API (0: any free port).
    api_port: int = 10250
    # URL managers use to reach the route API; empty: http://<api_host>:<api port>.
    api_url: str = ""
    # This proxy's id among the cluster's app proxies; empty: the host name.
    id: str = ""
    # Manager base URL the proxy announces itself to (and rebuilds its routes from); empty: none.
    manager_url: str = ""
    # Seconds between announcements to the manager.
    announce_interval: float = 10.0
    # Seconds the cookie an app token is exchanged for stays valid.
    cookie_ttl: float = 86400.0
    # Processes serving apps (the main port, and each app's port in port mode); each extra one
    # follows the route table.
    workers: int = 1


@dataclasses.dataclass(frozen=True)
class LoggingConfig:
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


@dataclasses.dataclass(frozen=True)
class Config:
    cluster: ClusterConfig = dataclasses.field(default_factory=ClusterConfig)
    manager: ManagerConfig = dataclasses.field(default_factory=ManagerConfig)
    agent: AgentConfig = dataclasses.field(default_factory=AgentConfig)
    bus: BusConfig = dataclasses.field(default_factory=BusConfig)
    storage: StorageConfig = dataclasses.field(default_factory=StorageConfig)
    appproxy: AppProxyConfig = dataclasses.field(default_factory=AppProxyConfig)
    logging: LoggingConfig = dataclasses.field(default_factory=LoggingConfig)

    @property
    def data_dir(self) -> Path:
        return Path(os.path.expanduser(self.cluster.data_dir))


def _type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    return {str: "a string", int: "an integer", float: "a number", bool: "a boolean"}.get(
        tp, "a string" if tp is Secret else getattr(tp, "__name__", str(tp))
    )


def _coerce(tp: Any, value: Any, where: str) -> Any:
    """Check *value* (from TOML or, as a string, from the environment) against *tp*."""
    from_env = where.startswith("environment ")
    origin = get_origin(tp)
    if origin is Literal:
        if value in get_args(tp):
            return value
    elif tp is bool:
        if isinstance(value, bool):
            return value
        if from_env and isinstance(value, str) and value.lower() in {"1", "0", "true", "false"}:
            return value.lower() in {"1", "true"}
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if from_env and isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if from_env and isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    elif tp is Secret and isinstance(value, str):
        return Secret(value)
    shown = "<hidden>" if tp is Secret else repr(value)
    raise ConfigError(f"{where}: invalid value {shown}; expected {_type_name(tp)}")


def _build_section(cls: type[Any], raw: Mapping[str, Any], env: Mapping[str, str], src: str) -> Any:
    section = _section_name(cls)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"{src}:{section}.{key}: unknown key; known keys: {known}")
        values[key] = _coerce(hints[key], value, f"{src}:{section}.{key}")
    for key in fields:
        env_name = f"{ENV_PREFIX}{section.upper()}__{key.upper()}"
        if env_name in env:
            values[key] = _coerce(hints[key], env[env_name], f"environment {env_name}")
    return cls(**values)


def _section_name(cls: type[Any]) -> str:
    for f in dataclasses.fields(Config):
        if f.type == cls.__name__ or f.type is cls:
            return f.name
    raise AssertionError(cls)


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Config:
    """Load and validate *path* (None: defaults only), then apply environment overrides.

    *overrides* (``{"agent": {"backend": "dummy"}}``) is applied like file content,
    for tests and for the CLI.
    """
    env = os.environ if env is None else env
    raw: dict[str, Any] = {}
    src = "<defaults>"
    if path is not None:
        src = os.fspath(path)
        try:
            with open(path, "rb") as f:
                raw = tomllib.load(f)
        except FileNotFoundError:
            raise ConfigError(f"{src}: config file not found") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{src}: not valid TOML: {e}") from None
    hints = typing.get_type_hints(Config)
    for section, content in raw.items():
        if section not in hints:
            known = ", ".join(sorted(hints))
            raise ConfigError(f"{src}:{section}: unknown section; known sections: {known}")
        if not isinstance(content, dict):
            raise ConfigError(f"{src}:{section}: expected a table, got {content!r}")
    for section in overrides or {}:
        if section not in hints:
            raise ConfigError(
                f"overrides: unknown section {section!r}; known sections: {', '.join(sorted(hints))}"
            )
    for name in env:
        section_part, sep, _ = name.removeprefix(ENV_PREFIX).partition("__")
        if name.startswith(ENV_PREFIX) and sep and section_part.lower() not in hints:
            raise ConfigError(
                f"environment {name}: unknown section {section_part.lower()}; "
                f"known sections: {', '.join(sorted(hints))}"
            )
    for section in hints:
        prefix = f"{ENV_PREFIX}{section.upper()}__"
        for name in env:
            if name.startswith(prefix):
                key = name[len(prefix) :].lower()
                known_keys = {f.name for f in dataclasses.fields(hints[section])}
                if key not in known_keys:
                    raise ConfigError(
                        f"environment {name}: unknown key {section}.{key}; "
                        f"known keys: {', '.join(sorted(known_keys))}"
                    )
    sections: dict[str, Any] = {}
    for section, cls in hints.items():
        content = dict(raw.get(section, {}))
        content.update((overrides or {}).get(section, {}))
        sections[section] = _build_section(cls, content, env, src)
    return Config(**sections)


def config_keys() -> dict[str, dict[str, Any]]:
    """Every section and key with its default (for the example file and its test)."""
    out: dict[str, dict[str, Any]] = {}
    for f in dataclasses.fields(Config):
        cls = typing.get_type_hints(Config)[f.name]
        out[f.name] = {}
        for sf in dataclasses.fields(cls):
            if sf.default is not dataclasses.MISSING:
                out[f.name][sf.name] = sf.default
            elif sf.default_factory is not dataclasses.MISSING:
                out[f.name][sf.name] = sf.default_factory()
    return out
