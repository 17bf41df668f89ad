"""Storage transfers: our storage proxy beside nginx on the same disk, curl as the client.

    .venv/bin/python bench/storage.py [--size-mib 1024] [--rounds 3] [--files 100000] [--dir D]

Upload: ours is one tus ``PATCH`` of the whole file (``curl -T``) to a storage proxy
running as its own process (``backendai run --role=storage``); the peer is nginx
(Debian's, one worker, WebDAV ``PUT``) writing into the same directory tree.
Download: ``curl -o /dev/null`` of the uploaded file from each (nginx with
sendfile).  ``dd`` gives the disk's limit in the same run: a write with
``conv=fdatasync``, and a read of the file, which the page cache holds as it
does for both servers.  Listing: our folder listing of N files streamed through
the proxy beside ``ls -f | wc -l`` on the same directory (names only), and
``ls -fl`` (which, like ours, stats every entry).  Medians of the
rounds; ratios are ours / peer (>= 0.8 is the target for transfers).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from backendai.config import Secret
from backendai.vfs.tokens import TransferClaims, issue_token

SECRET = "bench-storage-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited early (code {proc.returncode})")
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{what} did not answer at {url}")


def curl(*args: str) -> float:
    """Run curl; seconds it took (from its own timer)."""
    done = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{time_total}", *args],
        capture_output=True,
        text=True,
        check=True,
    )
    code, seconds = done.stdout.split()
    if code not in ("200", "201", "204"):
        raise SystemExit(f"curl {' '.join(args)}: HTTP {code}")
    return float(seconds)


def timed(argv: list[str], **kw: object) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, **kw)  # type: ignore[call-overload]
    return time.perf_counter() - t0


def start_nginx(work: Path, root: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    conf = work / "nginx.conf"
    (work / "nginx-tmp").mkdir(exist_ok=True)
    conf.write_text(
        ("user root;\n" if os.geteuid() == 0 else "")  # as the proxy: write where it writes
        + f"""
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    sendfile on;
    client_max_body_size 0;
    client_body_temp_path {root}/.nginx-body;
    proxy_temp_path {work}/nginx-tmp;
    fastcgi_temp_path {work}/nginx-tmp;
    uwsgi_temp_path {work}/nginx-tmp;
    scgi_temp_path {work}/nginx-tmp;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location / {{ dav_methods PUT; create_full_put_path on; }}
    }}
}}
"""
    )
    proc = subprocess.Popen(
        ["nginx", "-c", str(conf), "-p", str(work), "-g", "daemon off;"],
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:  # nginx answers 403 on / (no index): wait for the port instead
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"nginx did not start (see {work}/nginx-error.log)") from None
            time.sleep(0.1)


def start_proxy(work: Path, volumes: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    port, client_port = free_port(), free_port()
    cfg = work / "storage.toml"
    cfg.write_text(
        f'[cluster]\nsecret = "{SECRET}"\ndata_dir = "{work / "data"}"\n'
        f'[storage]\nport = {port}\nclient_port = {client_port}\nvolumes_dir = "{volumes}"\n'
        # nginx does not flush uploads either; sync_uploads = true adds one fdatasync per file.
        "sync_uploads = false\n"
        '[logging]\nlevel = "WARNING"\n'
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "backendai.cli", "run", "--role=storage", "--config", str(cfg)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/v1/health", proc, "storage proxy")
    return proc, base, f"http://127.0.0.1:{client_port}"


def manager_call(base: str, method: str, path: str, body: object) -> object:
    req = urllib.request.Request(
        base + path,
        method=method,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {SECRET}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read() or b"null")


def token(op: str, folder: str, path: str, size: int | None = None) -> str:
    claims = TransferClaims(op, "local", folder, path, time.time() + 3600, size)  # type: ignore[arg-type]
    return issue_token(Secret(SECRET), claims)


def make_source(path: Path, size: int) -> None:
    block = os.urandom(8 * 1024 * 1024)
    with open(path, "wb") as f:
        for _ in range(size // len(block)):
            f.write(block)
        f.write(block[: size % len(block)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--dir", help="work directory (default: a temporary one under /var/tmp)")
    args = ap.parse_args()
    for tool in ("curl", "nginx", "dd"):
        if shutil.which(tool) is None:
            raise SystemExit(f"bench/storage.py needs {tool!r} (apt-get install nginx curl)")
    size = args.size_mib * 1024 * 1024
    work = Path(tempfile.mkdtemp(prefix="bench-storage-", dir=args.dir or "/var/tmp"))
    volumes = work / "volumes"
    (volumes / "local").mkdir(parents=True)
    web = volumes / "local" / "nginx"
    web.mkdir()
    source = work / "source.bin"
    make_source(source, size)
    proxy, base, transfers = start_proxy(work, volumes)
    nginx, nport = start_nginx(work, web)
    results: dict[str, list[float]] = {
        k: [] for k in ("up", "up_ng", "down", "down_ng", "ddw", "ddr")
    }
    try:
        manager_call(base, "POST", "/v1/folders/local", {"id": "bench"})
        for r in range(args.rounds):
            name = f"f{r}.bin"
            tus = [
                "-X", "PATCH", "-H", "Tus-Resumable: 1.0.0",
                "-H", "Content-Type: application/offset+octet-stream",
                "-H", "Upload-Offset: 0", "-H", "Expect:",
            ]  # fmt: skip
            url = f"{transfers}/upload?token={token('upload', 'bench', name, size)}"
            results["up"].append(curl(*tus, "-T", str(source), url))
            results["up_ng"].append(
                curl("-H", "Expect:", "-T", str(source), f"http://127.0.0.1:{nport}/{name}")
            )
            results["down"].append(
                curl(f"{transfers}/download?token={token('download', 'bench', name)}")
            )
            results["down_ng"].append(curl(f"http://127.0.0.1:{nport}/{name}"))
            out = work / "dd.bin"
            results["ddw"].append(
                timed(["dd", f"if={source}", f"of={out}", "bs=8M", "conv=fdatasync"])
            )
            results["ddr"].append(timed(["dd", f"if={out}", "of=/dev/null", "bs=8M"]))
            out.unlink()
            (volumes / "local" / "folders" / "bench" / name).unlink()
            (web / name).unlink()
        many = volumes / "local" / "folders" / "bench" / "many"
        many.mkdir()
        for i in range(args.files):
            os.close(os.open(many / f"f{i:06d}", os.O_CREAT | os.O_WRONLY, 0o644))
        listing = "/v1/folders/local/bench/files?path=many"
        ours_ls = [
            curl("-H", f"Authorization: Bearer {SECRET}", f"{base}{listing}")
            for _ in range(args.rounds)
        ]
        peer_ls = [timed(["sh", "-c", f"ls -f {many} | wc -l"]) for _ in range(args.rounds)]
        # Ours stats every entry (size, mode, times); ls -fl does the same work, ls -f does not.
        peer_lsl = [timed(["sh", "-c", f"ls -fl {many} | wc -l"]) for _ in range(args.rounds)]
    finally:
        proxy.terminate()
        nginx.terminate()
        proxy.wait(20)
        nginx.wait(20)
        shutil.rmtree(work, ignore_errors=True)
    mb = size / 1e6

    def rate(key: str) -> float:
        return mb / statistics.median(results[key])

    rows = [
        ("upload (MB/s)", rate("up"), rate("up_ng"), rate("ddw"), "dd write, fdatasync"),
        ("download (MB/s)", rate("down"), rate("down_ng"), rate("ddr"), "dd read (cached)"),
    ]
    print(f"storage bench: {args.size_mib} MiB file, {args.rounds} rounds, medians")
    print(f"{'operation':<18}{'ours':>10}{'nginx':>10}{'ratio':>8}{'dd':>10}  dd is")
    for label, ours, peer, dd, what in rows:
        print(f"{label:<18}{ours:>10.0f}{peer:>10.0f}{ours / peer:>8.2f}{dd:>10.0f}  {what}")
    o = statistics.median(ours_ls)
    for peer_times, what in ((peer_ls, "ls -f | wc -l"), (peer_lsl, "ls -fl | wc -l")):
        p = statistics.median(peer_times)
        print(f"{'list ' + str(args.files) + ' (s)':<18}{o:>10.3f}{p:>10.3f}{o / p:>8.2f}"
              f"{'':>10}  peer: {what}")  # fmt: skip


if __name__ == "__main__":
    main()
