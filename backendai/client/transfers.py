"""Moving files to and from folders through the storage proxy, resumable, with progress.

Uploads are tus: the manager hands out a token, ``HEAD`` says how much the
proxy already holds (from an earlier, interrupted run too), and ``PATCH``
sends the rest in large chunks; a dropped connection is retried from the
offset the proxy reports.  Downloads write ``NAME.part`` and resume it with
``Range``; the file takes its name only when complete.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import trio

from ..errors import BackendAIError
from .api import APIClient

__all__ = ["Progress", "download_file", "upload_file"]

CHUNK = 64 * 1024 * 1024
READ = 4 * 1024 * 1024
RETRIES = 5
_TUS = {"Tus-Resumable": "1.0.0"}


class Progress:
    """One line on stderr: bytes done of total, and the rate."""

    def __init__(self, label: str, total: int, *, stream: Any = None) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self._start = time.monotonic()
        self._shown = 0.0
        self._stream = stream or sys.stderr
        self._tty = bool(getattr(self._stream, "isatty", lambda: False)())

    def note(self, message: str) -> None:
        print(f"{self.label}: {message}", file=self._stream, flush=True)

    def update(self, done: int) -> None:
        self.done = done
        now = time.monotonic()
        if self._tty and now - self._shown >= 0.2:
            self._shown = now
            print(f"\r{self._line()}", end="", file=self._stream, flush=True)

    def finish(self) -> None:
        print(("\r" if self._tty else "") + self._line(), file=self._stream, flush=True)

    def _line(self) -> str:
        pct = 100.0 * self.done / self.total if self.total else 100.0
        rate = self.done / max(time.monotonic() - self._start, 1e-6) / 1e6
        return f"{self.label}: {pct:5.1f}% {self.done}/{self.total} bytes {rate:.1f} MB/s"


def _read(path: Path, offset: int, n: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(n)


async def _ticket(api: APIClient, folder: str, action: str, body: dict[str, Any]) -> dict[str, Any]:
    r = await api.request("POST", f"/folders/{folder}/{action}", json=body)
    ticket: dict[str, Any] = r.json()
    return ticket


def _proxy_error(r: httpx.Response) -> BackendAIError:
    try:
        msg = r.json().get("msg", r.text)
    except ValueError:
        msg = r.text
    return BackendAIError(f"storage proxy: {r.status_code} {msg}")


async def upload_file(
    api: APIClient,
    folder: str,
    local: Path,
    remote: str,
    *,
    progress: Callable[[str, int], Progress] = Progress,
) -> None:
    """Upload *local* to *remote* in *folder*, resuming what the proxy already holds."""
    size = (await trio.Path(local).stat()).st_size
    bar = progress(remote, size)
    ticket = await _ticket(api, folder, "request-upload", {"path": remote, "size": size})
    async with httpx.AsyncClient(timeout=httpx.Timeout(300.0, connect=30.0)) as http:
        params = {"token": ticket["token"]}
        head = await http.head(ticket["url"], params=params, headers=_TUS)
        if head.status_code != 200:
            raise _proxy_error(head)
        offset = int(head.headers["upload-offset"])
        if offset:
            bar.note(f"resuming at {offset} of {size} bytes")
        if size == 0:  # tus creation of an empty upload completes it
            r = await http.post(
                ticket["url"], params=params, headers={**_TUS, "Upload-Length": "0"}
            )
            if r.status_code != 201:
                raise _proxy_error(r)
        failures = 0
        while offset < size:
            data = await trio.to_thread.run_sync(_read, local, offset, CHUNK)
            headers = {
                **_TUS,
                "Content-Type": "application/offset+octet-stream",
                "Upload-Offset": str(offset),
            }
            try:
                r = await http.patch(ticket["url"], params=params, content=data, headers=headers)
            except httpx.TransportError as e:
                failures += 1
                if failures > RETRIES:
                    raise BackendAIError(f"upload of {local} failed {failures} times: {e}") from e
                bar.note(f"connection lost ({e!r}); resuming")
                await trio.sleep(min(2**failures, 30))
                head = await http.head(ticket["url"], params=params, headers=_TUS)
                if head.status_code == 401:  # the token expired while we waited
                    ticket = await _ticket(
                        api, folder, "request-upload", {"path": remote, "size": size}
                    )
                    params = {"token": ticket["token"]}
                    head = await http.head(ticket["url"], params=params, headers=_TUS)
                offset = int(head.headers["upload-offset"])
                continue
            if r.status_code != 204:
                raise _proxy_error(r)
            offset = int(r.headers["upload-offset"])
            bar.update(offset)
    bar.finish()


async def download_file(
    api: APIClient,
    folder: str,
    remote: str,
    local: Path,
    *,
    archive: bool = False,
    progress: Callable[[str, int], Progress] = Progress,
) -> None:
    """Download *remote* (a directory as a zip with *archive*) to *local*, resuming a .part."""
    ticket = await _ticket(api, folder, "request-download", {"path": remote, "archive": archive})
    part = trio.Path(local.with_name(local.name + ".part"))
    offset = (await part.stat()).st_size if await part.exists() and not archive else 0
    bar = progress(remote, 0)
    if offset:
        bar.note(f"resuming at {offset} bytes")
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(300.0, connect=30.0)) as http,
        http.stream("GET", ticket["url"], params={"token": ticket["token"]}, headers=headers) as r,
    ):
        if r.status_code == 416 and offset:
            await part.replace(local)  # the part was already whole
            bar.finish()
            return
        if r.status_code not in (200, 206):
            await r.aread()
            raise _proxy_error(r)
        if r.status_code == 200:
            offset = 0
        length = r.headers.get("content-length")
        bar.total = offset + int(length) if length else 0
        done = offset
        async with await trio.open_file(part, "r+b" if offset else "wb") as f:
            await f.seek(offset)
            async for piece in r.aiter_bytes(READ):
                await f.write(piece)
                done += len(piece)
                bar.update(done)
    if bar.total == 0:
        bar.total = done
    await part.replace(local)
    bar.finish()
