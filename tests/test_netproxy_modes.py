"""App proxy modes: wildcard subdomains and a port per app (kept across a restart); TCP apps."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pytest
import trio

from backendai.errors import UnavailableError
from backendai.netproxy import AppRoute, ProxyServer, ProxySettings, RouteRegistry, wildcard_name

from .netproxy_helpers import Seen, exchange, h11_backend, read_exactly, serve, status_of


def registry(
    mode: str = "port",
    state: Path | None = None,
    ports: range = range(20000, 20003),
    port: int = 10200,
) -> RouteRegistry:
    return RouteRegistry(
        mode,  # type: ignore[arg-type]
        domain="apps.test",
        public_host="proxy.test",
        port=port,
        ports=ports,
        state_file=state,
    )


def app(session: str, name: str = "jupyter", port: int = 8888) -> AppRoute:
    return AppRoute(session, name, "127.0.0.1", port, owner="AKIA")


# -- the registry (no I/O but its state file) ----------------------------------------------


def test_wildcard_names_are_dns_labels_and_stable() -> None:
    name = wildcard_name("s1/Jupyter Lab", "Jupyter Lab")
    assert name == wildcard_name("s1/Jupyter Lab", "Jupyter Lab")
    assert name.startswith("jupyter-lab-")
    assert len(name) <= 63
    assert all(c.isalnum() or c == "-" for c in name)
    assert wildcard_name("s2/x", "x") != wildcard_name("s1/x", "x")
    assert wildcard_name("s/_", "___").startswith("app-")


def test_wildcard_placement_and_routing() -> None:
    reg = registry("wildcard")
    placed = reg.add(app("s1"))
    assert placed.url == f"http://{placed.name}.apps.test:10200/"
    from backendai.netproxy import parse_head

    def host(h: str) -> str | None:
        route = reg.route_for(parse_head(f"GET / HTTP/1.1\r\nHost: {h}\r\n\r\n".encode()))
        return None if route is None else route.name

    assert host(f"{placed.name}.apps.test:10200") == "s1/jupyter"
    assert host(f"{placed.name.upper()}.APPS.TEST") == "s1/jupyter"
    assert host(f"{placed.name}.apps.other") is None
    assert host("apps.test") is None
    reg.remove("s1/jupyter")
    assert host(f"{placed.name}.apps.test") is None


def test_ports_are_allocated_lowest_first_and_kept_per_route(tmp_path: Path) -> None:
    reg = registry(state=tmp_path / "ports.json")
    assert reg.add(app("s1")).port == 20000
    assert reg.add(app("s2")).port == 20001
    assert reg.add(app("s1", port=9999)).port == 20000  # re-adding keeps the port
    route = reg.at_port(20000)
    assert route is not None
    assert route.port == 9999
    reg.remove("s1/jupyter")
    assert reg.at_port(20000) is None
    assert reg.add(app("s3")).port == 20000


def test_the_allocation_survives_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "ports.json"
    first = registry(state=state)
    first.add(app("s1"))
    first.add(app("s2"))
    first.remove("s1/jupyter")
    first.add(app("s3", "web"))
    assert json.loads(state.read_text()) == {"ports": {"s2/jupyter": 20001, "s3/web": 20000}}
    again = registry(state=state)
    assert again.allocated_ports() == [20000, 20001]
    assert again.add(app("s4")).port == 20002  # the kept ports are not handed to others
    assert again.add(app("s2")).port == 20001


def test_rebuilding_from_the_managers_view_drops_what_it_lacks(tmp_path: Path) -> None:
    reg = registry(state=tmp_path / "ports.json")
    reg.add(app("s1"))
    reg.add(app("s2"))
    reg.retain({"s2/jupyter", "s3/jupyter"})
    reg.add(app("s3"))
    assert sorted(reg.apps) == ["s2/jupyter", "s3/jupyter"]
    assert reg.placements["s2/jupyter"].port == 20001
    assert reg.placements["s3/jupyter"].port == 20000


def test_a_full_range_is_a_clear_error() -> None:
    reg = registry(ports=range(20000, 20002))
    reg.add(app("s1"))
    reg.add(app("s2"))
    with pytest.raises(UnavailableError, match=r"every port of 20000-20001 is in use \(2 apps\)"):
        reg.add(app("s3"))


def test_sessions_remove_all_their_routes() -> None:
    reg = registry()
    reg.add(app("s1", "a"))
    reg.add(app("s1", "b"))
    reg.add(app("s2", "a"))
    assert sorted(p.route_id for p in reg.remove_session("s1")) == ["s1/a", "s1/b"]
    assert list(reg.apps) == ["s2/a"]


@pytest.mark.parametrize("text", ["", "{", '{"ports": [1]}', '{"ports": {"a": "x"}}'])
def test_a_broken_state_file_starts_afresh(tmp_path: Path, text: str) -> None:
    state = tmp_path / "ports.json"
    state.write_text(text)
    assert registry(state=state).allocated_ports() == []


# -- the listeners on loopback --------------------------------------------------------------


async def free_range(n: int) -> range:
    """n consecutive ports that were free a moment ago (a taken one is skipped by the proxy)."""
    sock = trio.socket.socket()
    await sock.bind(("127.0.0.1", 0))
    base = sock.getsockname()[1]
    sock.close()
    base = min(base, 65535 - n)
    return range(base, base + n)


async def start_server(
    nursery: trio.Nursery, reg: RouteRegistry
) -> tuple[ProxyServer, trio.CancelScope]:
    server = ProxyServer(reg, ProxySettings(), host="127.0.0.1")
    scope = trio.CancelScope()

    async def run(task_status: trio.TaskStatus[None]) -> None:
        with scope:
            async with trio.open_nursery() as inner:
                await inner.start(server.serve)
                task_status.started()

    await nursery.start(run)
    return server, scope


async def test_wildcard_mode_routes_by_subdomain(nursery: trio.Nursery) -> None:
    seen = Seen()
    backend = await serve(nursery, partial(h11_backend, "J", seen))
    reg = RouteRegistry("wildcard", domain="apps.test", public_host="", port=0, ports=range(0))
    server, _ = await start_server(nursery, reg)
    placed = await server.add(app("s1", port=backend))
    assert placed.port == reg.port != 0
    request = f"GET /lab HTTP/1.1\r\nHost: {placed.name}.apps.test:{placed.port}\r\nConnection: close\r\n\r\n".encode()
    with trio.fail_after(10):
        response = await exchange(placed.port, request)
        assert response.endswith(b"J GET /lab ")
        other = await exchange(placed.port, b"GET / HTTP/1.1\r\nHost: nope.apps.test\r\n\r\n")
        assert status_of(other) == 404
        reg.remove_session("s1")
        gone = await exchange(placed.port, request)
    assert status_of(gone) == 404
    assert f"no app is served at host '{placed.name}.apps.test'".encode() in gone


async def test_port_mode_gives_each_app_a_port_and_keeps_it_across_a_restart(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    seen_a, seen_b = Seen(), Seen()
    a = await serve(nursery, partial(h11_backend, "A", seen_a))
    b = await serve(nursery, partial(h11_backend, "B", seen_b))
    ports = await free_range(8)
    state = tmp_path / "ports.json"
    reg = registry(state=state, ports=ports, port=0)
    server, scope = await start_server(nursery, reg)
    with trio.fail_after(20):
        pa = await server.add(app("s1", port=a))
        pb = await server.add(app("s2", port=b))
        assert {pa.port, pb.port} <= set(ports)
        assert pa.port != pb.port
        assert pa.url == f"http://proxy.test:{pa.port}/"
        # The Host does not matter in port mode: the port is the app.
        for port, name in [(pa.port, b"A"), (pb.port, b"B")]:
            response = await exchange(
                port, b"GET /x HTTP/1.1\r\nHost: whatever\r\nConnection: close\r\n\r\n"
            )
            assert response.endswith(name + b" GET /x ")
        scope.cancel()  # the proxy goes away ...
        await trio.testing.wait_all_tasks_blocked()
        reg2 = registry(state=state, ports=ports, port=0)  # ... and comes back with its state file
        server2, _ = await start_server(nursery, reg2)
        # Before the manager re-registers the app, its kept port answers 404.
        early = await exchange(pa.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert status_of(early) == 404
        assert f"no app is served at port {pa.port}".encode() in early
        assert (await server2.add(app("s1", port=a))).port == pa.port
        response = await exchange(
            pa.port, b"GET /again HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
    assert response.endswith(b"A GET /again ")


async def test_port_mode_skips_a_port_someone_else_holds(nursery: trio.Nursery) -> None:
    seen = Seen()
    backend = await serve(nursery, partial(h11_backend, "A", seen))
    ports = await free_range(4)
    squatter = trio.socket.socket()
    await squatter.bind(("127.0.0.1", ports.start))
    squatter.listen()
    with squatter:
        reg = registry(ports=ports, port=0)
        server, _ = await start_server(nursery, reg)
        with trio.fail_after(10):
            placed = await server.add(app("s1", port=backend))
            assert placed.port != ports.start
            response = await exchange(
                placed.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
    assert response.endswith(b"A GET / ")


async def test_a_tcp_app_in_port_mode_is_spliced_raw(nursery: trio.Nursery) -> None:
    async def ssh_like(stream: trio.SocketStream) -> None:
        async with stream:
            await stream.send_all(b"SSH-2.0-fake\r\n")
            while data := await stream.receive_some():
                await stream.send_all(data[::-1])

    backend = await serve(nursery, ssh_like)
    reg = registry(ports=await free_range(4), port=0)
    server, _ = await start_server(nursery, reg)
    with trio.fail_after(10):
        placed = await server.add(
            AppRoute("s1", "sshd", "127.0.0.1", backend, protocol="tcp", owner="AKIA")
        )
        stream = await trio.open_tcp_stream("127.0.0.1", placed.port)
        async with stream:
            assert await read_exactly(stream, 14) == b"SSH-2.0-fake\r\n"
            await stream.send_all(b"\x00\x01binary\r\n\r\n")
            assert await read_exactly(stream, 12) == b"\n\r\n\ryranib\x01\x00"


async def test_a_tcp_app_refuses_clients_outside_its_ranges(nursery: trio.Nursery) -> None:
    async def greet(stream: trio.SocketStream) -> None:
        async with stream:
            await stream.send_all(b"hello")

    backend = await serve(nursery, greet)
    reg = registry(ports=await free_range(4), port=0)
    server, _ = await start_server(nursery, reg)
    with trio.fail_after(10):
        far = await server.add(
            AppRoute(
                "s1", "db", "127.0.0.1", backend, protocol="tcp", allowed_client_ips=("10.0.0.0/8",)
            )
        )
        assert await exchange(far.port, b"") == b""
        near = await server.add(
            AppRoute(
                "s2", "db", "127.0.0.1", backend, protocol="tcp", allowed_client_ips=("127.0.0.1",)
            )
        )
        assert await exchange(near.port, b"") == b"hello"


@pytest.mark.parametrize(
    ("appproxy", "message"),
    [
        (
            {"port_range_start": 10300, "port_range_end": 10200},
            "port_range_start=10300 port_range_end=10200",
        ),
        ({"port_range_start": 0}, "expected 0 < start <= end < 65536"),
        ({"mode": "wildcard", "domain": "."}, "appproxy.domain is empty"),
    ],
)
def test_bad_proxy_configs_are_named(
    tmp_path: Path, appproxy: dict[str, object], message: str
) -> None:
    from backendai.config import load_config
    from backendai.errors import ConfigError
    from backendai.roles.appproxy import build_registry

    config = load_config(
        None, env={}, overrides={"cluster": {"data_dir": str(tmp_path)}, "appproxy": appproxy}
    )
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        build_registry(config)


def test_the_port_allocation_lives_under_the_data_dir(tmp_path: Path) -> None:
    from backendai.config import load_config
    from backendai.roles.appproxy import build_registry

    config = load_config(
        None,
        env={},
        overrides={
            "cluster": {"data_dir": str(tmp_path)},
            "appproxy": {"mode": "port", "id": "edge-1"},
        },
    )
    reg = build_registry(config)
    assert reg.state_file == tmp_path / "appproxy-edge-1" / "ports.json"
    assert reg.ports == range(10201, 10301)
