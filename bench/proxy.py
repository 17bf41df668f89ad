"""The app proxy beside configurable-http-proxy and nginx, on the same machine, in one run.

    .venv/bin/python bench/proxy.py [--duration 5] [--connections 32] [--routes 500]

One small HTTP backend (nginx answering a 6-byte body, 1 worker) is reached
directly, through our proxy (``backendai run --role=appproxy``, wildcard mode,
a public route), through configurable-http-proxy (npm, installed into
``~/.cache/backendai-bench/chp``) and through nginx as a reverse proxy
(1 worker, upstream keep-alive).  Load: ``wrk`` (Debian) with keep-alive and
with ``Connection: close`` (a new connection per request); latency p50/p99
from ``wrk --latency``.  Websocket connects/s: handshake, one echo, close,
from a Trio client to a trio-websocket echo backend.  Route add time with
``--routes`` routes in place: ours through the route API, CHP through its REST
API, nginx by rewriting its config and reloading until the new route answers.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import trio
from trio_websocket import wrap_client_stream

SECRET = "bench-secret"
CHP_TOKEN = "bench-chp-token"
CHP_DIR = Path.home() / ".cache" / "backendai-bench" / "chp"
WS_BACKEND = """
import sys, trio
from trio_websocket import serve_websocket, ConnectionClosed
async def echo(request):
    ws = await request.accept()
    try:
        while True:
            await ws.send_message(await ws.get_message())
    except ConnectionClosed:
        pass
trio.run(lambda: serve_websocket(echo, "127.0.0.1", int(sys.argv[1]), ssl_context=None))
"""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 20.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


@contextmanager
def process(cmd: list[str], port: int, **kw: object) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)  # type: ignore[call-overload]
    try:
        wait_port(port)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def nginx_conf(prefix: Path, servers: str, workers: int = 1) -> Path:
    for d in ("logs", "tmp"):
        (prefix / d).mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"""user root; worker_processes {workers}; daemon off; pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log error;
events {{ worker_connections 4096; }}
http {{
  access_log off; client_body_temp_path {prefix}/tmp; proxy_temp_path {prefix}/tmp;
  fastcgi_temp_path {prefix}/tmp; uwsgi_temp_path {prefix}/tmp; scgi_temp_path {prefix}/tmp;
  map $http_upgrade $connection_upgrade {{ default upgrade; '' ''; }}
{servers}
}}
"""
    )
    return conf


def nginx_proxy_servers(port: int, backend: int, ws: int, extra_routes: int = 0) -> str:
    routes = "".join(
        f"  server {{ listen {port}; server_name r{i}.bench.test; location / {{ proxy_pass http://be; }} }}\n"
        for i in range(extra_routes)
    )
    return f"""  upstream be {{ server 127.0.0.1:{backend}; keepalive 64; }}
  server {{ listen {port} default_server;
    location / {{ proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection ""; }}
    location /ws {{ proxy_pass http://127.0.0.1:{ws}; proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection $connection_upgrade; }} }}
{routes}"""


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def wrk(
    port: int, host: str, path: str, *, duration: float, connections: int, close: bool
) -> dict[str, float]:
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{duration:g}s", "--latency", "-H", f"Host: {host}"]
    if close:
        cmd += ["-H", "Connection: close"]
    out = subprocess.run(
        [*cmd, f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, check=True
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lat = {
        p: float(v) * _UNITS[u]
        for p, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    }
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"wrk saw {errors.group(1)} error responses from port {port}:\n{out}")
    return {"rps": rps, "p50": lat["50"], "p99": lat["99"]}


async def ws_connects(
    port: int, host: str, path: str, duration: float, concurrency: int = 16
) -> float:
    count = 0

    async def worker() -> None:
        nonlocal count
        while True:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with trio.open_nursery() as n:
                ws = await wrap_client_stream(n, stream, host, path)
                await ws.send_message("ping")
                assert await ws.get_message() == "ping"
                await ws.aclose()
            count += 1

    with trio.move_on_after(duration):
        async with trio.open_nursery() as nursery:
            for _ in range(concurrency):
                nursery.start_soon(worker)
    return count / duration


def timed_adds(client: httpx.Client, n: int, add: object) -> list[float]:
    samples = []
    for i in range(n):
        t0 = time.perf_counter()
        add(client, i)  # type: ignore[operator]
        samples.append((time.perf_counter() - t0) * 1000)
    return samples


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--routes", type=int, default=500)
    ap.add_argument("--workers", type=int, default=1, help="our processes on the proxy port")
    ap.add_argument("--nginx-workers", type=int, default=1, help="nginx worker processes (proxy)")
    args = ap.parse_args()
    for tool in ("wrk", "nginx", "node"):
        if shutil.which(tool) is None:
            sys.exit(f"bench/proxy.py needs {tool!r} (apt-get install wrk nginx nodejs)")
    chp = CHP_DIR / "node_modules" / ".bin" / "configurable-http-proxy"
    if not chp.exists():
        CHP_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "configurable-http-proxy@4"],
            cwd=CHP_DIR,
            check=True,
        )
    tmp = Path(tempfile.mkdtemp(prefix="bench-proxy-"))
    backend, ws_port = free_port(), free_port()
    ours_port, ours_api, chp_port, chp_api, nginx_port = (free_port() for _ in range(5))
    be_conf = nginx_conf(
        tmp / "backend", f'  server {{ listen {backend}; location / {{ return 200 "hello\\n"; }} }}'
    )
    ng_conf = nginx_conf(
        tmp / "proxy", nginx_proxy_servers(nginx_port, backend, ws_port), args.nginx_workers
    )
    ours_conf = tmp / "backendai.toml"
    ours_conf.write_text(
        f'[cluster]\nsecret = "{SECRET}"\ndata_dir = "{tmp / "data"}"\n'
        f'[appproxy]\nport = {ours_port}\napi_port = {ours_api}\nmode = "wildcard"\ndomain = "bench.test"\n'
        f"workers = {args.workers}\n"
        '[logging]\nlevel = "WARNING"\n'
    )
    chp_env = {**os.environ, "CONFIGPROXY_AUTH_TOKEN": CHP_TOKEN}
    results: dict[str, dict[str, float]] = {}
    with (
        process(["nginx", "-c", str(be_conf)], backend),
        process([sys.executable, "-c", WS_BACKEND, str(ws_port)], ws_port),
        process([sys.executable, "-m", "backendai.cli", "run", "--role=appproxy", "--config", str(ours_conf)], ours_api),
        process([str(chp), "--ip", "127.0.0.1", "--port", str(chp_port), "--api-ip", "127.0.0.1",
                 "--api-port", str(chp_api), "--log-level", "error"], chp_api, env=chp_env),
        process(["nginx", "-c", str(ng_conf)], nginx_port),
        httpx.Client(timeout=30) as client,
    ):  # fmt: skip
        ours_auth = {"Authorization": f"Bearer {SECRET}"}
        chp_auth = {"Authorization": f"token {CHP_TOKEN}"}

        def ours_add(c: httpx.Client, i: int, app: str = "", port: int = backend) -> str:
            body = {
                "session_id": f"s{i}",
                "app": app or "web",
                "target_host": "127.0.0.1",
                "target_port": port,
                "public": True,
            }
            r = c.post(f"http://127.0.0.1:{ours_api}/v1/routes", json=body, headers=ours_auth)
            r.raise_for_status()
            return str(r.json()["name"])

        def chp_add(c: httpx.Client, i: int, path: str = "", port: int = backend) -> None:
            r = c.post(
                f"http://127.0.0.1:{chp_api}/api/routes{path or f'/r{i}'}",
                json={"target": f"http://127.0.0.1:{port}"},
                headers=chp_auth,
            )
            r.raise_for_status()

        web = ours_add(client, -1)
        ws_name = ours_add(client, -2, "ws", ws_port)
        chp_add(client, 0, "/", backend)
        chp_add(client, 0, "/ws", ws_port)
        targets = {
            "direct": (backend, "localhost"),
            "ours": (ours_port, f"{web}.bench.test"),
            "chp": (chp_port, "localhost"),
            "nginx": (nginx_port, "localhost"),
        }
        for name, (port, host) in targets.items():
            for close in (False, True):
                r = wrk(
                    port,
                    host,
                    "/",
                    duration=args.duration,
                    connections=args.connections,
                    close=close,
                )
                key = "close" if close else "keepalive"
                results.setdefault(name, {}).update(
                    {f"{key}_rps": r["rps"], f"{key}_p50": r["p50"], f"{key}_p99": r["p99"]}
                )
        ws_targets = {
            "ours": (ours_port, f"{ws_name}.bench.test"),
            "chp": (chp_port, "localhost"),
            "nginx": (nginx_port, "localhost"),
        }
        for name, (port, host) in ws_targets.items():
            results[name]["ws_connects"] = trio.run(ws_connects, port, host, "/ws", args.duration)
        # Route adds with --routes routes in place.
        ours_samples = timed_adds(client, args.routes, ours_add)
        chp_samples = timed_adds(client, args.routes, chp_add)
        results["ours"]["route_add_ms"] = statistics.median(ours_samples[-100:])
        results["chp"]["route_add_ms"] = statistics.median(chp_samples[-100:])
        results["nginx"]["route_add_ms"] = nginx_route_add(
            ng_conf, nginx_port, backend, ws_port, args.routes, client, args.nginx_workers
        )
    print_table(results, args)
    shutil.rmtree(tmp, ignore_errors=True)


def nginx_route_add(
    conf: Path, port: int, backend: int, ws: int, routes: int, client: httpx.Client, workers: int
) -> float:
    """Rewrite the config with one more route, reload, and wait until the route answers."""
    samples = []
    for extra in range(routes, routes + 5):
        t0 = time.perf_counter()
        nginx_conf(conf.parent, nginx_proxy_servers(port, backend, ws, extra + 1), workers)
        subprocess.run(["nginx", "-c", str(conf), "-s", "reload"], check=True, capture_output=True)
        while True:
            try:
                if (
                    client.get(
                        f"http://127.0.0.1:{port}/", headers={"Host": f"r{extra}.bench.test"}
                    ).status_code
                    == 200
                ):
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.001)
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples)


def print_table(results: dict[str, dict[str, float]], args: argparse.Namespace) -> None:
    rows = [
        ("req/s keep-alive", "keepalive_rps", True),
        ("req/s new conn/request", "close_rps", True),
        ("p50 ms keep-alive", "keepalive_p50", False),
        ("p99 ms keep-alive", "keepalive_p99", False),
        ("p50 ms new conn", "close_p50", False),
        ("p99 ms new conn", "close_p99", False),
        ("websocket connects/s", "ws_connects", True),
        (f"route add ms ({args.routes} routes)", "route_add_ms", False),
    ]
    print(
        f"\napp proxy benchmark: wrk -t2 -c{args.connections} -d{args.duration:g}s, loopback, same "
        f"machine, same run; ours: {args.workers} process(es), nginx: {args.nginx_workers} worker(s)"
    )
    print(
        f"{'metric':<28}{'direct':>10}{'ours':>10}{'chp':>10}{'nginx':>10}{'ours/chp':>10}{'ours/nginx':>11}"
    )
    for label, key, higher in rows:
        vals = {n: results.get(n, {}).get(key) for n in ("direct", "ours", "chp", "nginx")}

        def cell(v: float | None) -> str:
            return f"{v:>10.1f}" if v is not None else f"{'-':>10}"

        def ratio(ours: float | None, peer: float | None) -> str:
            if ours is None or peer is None or peer == 0:
                return "-"
            return f"{ours / peer:.2f}x"

        print(f"{label:<28}" + "".join(cell(vals[n]) for n in vals) + f"{ratio(vals['ours'], vals['chp']):>10}{ratio(vals['ours'], vals['nginx']):>11}"
              + ("" if higher else "  (lower is better)"))  # fmt: skip


if __name__ == "__main__":
    main()
