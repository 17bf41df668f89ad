"""The kernel runner's file operations and terminals, driven directly over its socket."""

from __future__ import annotations

import base64
import io
import re
import tarfile
from typing import Any

import pytest
import trio

from backendai.agent.runner_client import RunnerConnection
from tests.test_kernel_exec import TIMEOUT, Runner, runner_fixture  # noqa: F401 (the fixture)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def write(
    conn: RunnerConnection, path: str, data: bytes, offset: int = 0, final: bool = True
) -> dict[str, Any]:
    await conn.send(
        {"op": "write-file", "path": path, "data": b64(data), "offset": offset, "final": final}
    )
    reply = await conn.receive()
    assert reply is not None
    return reply


async def test_upload_in_chunks_then_read_and_list(runner: Runner) -> None:
    conn = await runner.connect()
    assert (await write(conn, "data/in/f.bin", b"hello ", final=False))["size"] == 6
    assert not (runner.work / "data/in/f.bin").exists()  # visible only when complete
    # The API's name for the work directory is /home/work, wherever it really is.
    reply = await write(conn, "/home/work/data/in/f.bin", b"world", offset=6)
    assert reply == {"op": "written", "path": "data/in/f.bin", "size": 11, "final": True}
    await conn.aclose()
    assert (runner.work / "data/in/f.bin").read_bytes() == b"hello world"
    assert [p.name for p in (runner.work / "data/in").iterdir()] == ["f.bin"]
    reply = await runner.request(
        {"op": "read-file", "path": "data/in/f.bin", "offset": 6, "length": 3}
    )
    assert (base64.b64decode(reply["data"]), reply["eof"], reply["size"]) == (b"wor", False, 11)
    listing = await runner.request({"op": "list-files", "path": "data"})
    assert listing["abspath"] == str(runner.work / "data")
    assert [(e["name"], e["type"], e["mode"][0]) for e in listing["files"]] == [("in", "dir", "d")]


async def test_an_upload_cut_short_leaves_nothing(runner: Runner) -> None:
    conn = await runner.connect()
    await write(conn, "partial.txt", b"x" * 1000, final=False)
    reply = await write(conn, "partial.txt", b"y", offset=5)  # not where it left off
    assert reply["error"] == "bad-request"
    assert "offset 5 does not match the 1000 bytes written so far" in reply["message"]
    await write(conn, "other.txt", b"z", final=False)
    await conn.aclose()  # goes away mid-upload
    with trio.fail_after(TIMEOUT):
        while list(runner.work.iterdir()):  # noqa: ASYNC110 (the runner cleans up on close)
            await trio.sleep(0.02)


@pytest.mark.parametrize(
    ("op", "path", "slug", "message"),
    [
        ("write-file", "../evil.txt", "bad-path", "'../evil.txt' leaves"),
        ("write-file", "/etc/evil.txt", "bad-path", "'/etc/evil.txt' is outside"),
        ("write-file", "link/evil.txt", "bad-path", "through a symbolic link"),
        ("write-file", ".", "bad-path", "is a directory"),
        ("read-file", "link/passwd", "bad-path", "through a symbolic link"),
        ("read-file", "missing.txt", "not-found", "no such file or directory: 'missing.txt'"),
        ("read-file", "sub", "bad-path", "Is a directory"),
        ("list-files", "../..", "bad-path", "leaves"),
        ("list-files", "nowhere", "not-found", "'nowhere'"),
        ("archive", "link", "bad-path", "through a symbolic link"),
    ],
)
async def test_paths_outside_the_work_directory_are_refused(
    runner: Runner, op: str, path: str, slug: str, message: str
) -> None:
    (runner.work / "link").symlink_to("/etc")
    (runner.work / "sub").mkdir()
    reply = await runner.request({"op": op, "path": path, "data": "", "offset": 0, "final": True})
    assert (reply["op"], reply["error"]) == ("error", slug)
    assert message in reply["message"]
    assert sorted(p.name for p in runner.work.iterdir()) == ["link", "sub"]


async def test_archive_streams_a_tar_of_a_directory(runner: Runner) -> None:
    (runner.work / "proj/src").mkdir(parents=True)
    (runner.work / "proj/src/a.py").write_text("print(1)")
    (runner.work / "proj/big.bin").write_bytes(bytes(range(256)) * 4096)
    conn = await runner.connect()
    await conn.send({"op": "archive", "path": "proj"})
    data = bytearray()
    with trio.fail_after(TIMEOUT):
        assert (await conn.receive())["op"] == "archive-started"  # type: ignore[index]
        while (frame := await conn.receive())["op"] == "data":  # type: ignore[index]
            data += base64.b64decode(frame["data"])  # type: ignore[index]
    await conn.aclose()
    assert frame["op"] == "end"
    assert frame["size"] == len(data)
    with tarfile.open(fileobj=io.BytesIO(bytes(data))) as tar:
        assert sorted(tar.getnames()) == ["proj", "proj/big.bin", "proj/src", "proj/src/a.py"]
        member = tar.extractfile("proj/big.bin")
        assert member is not None
        assert member.read() == bytes(range(256)) * 4096


# -- terminals ---------------------------------------------------------------------


async def read_until(conn: RunnerConnection, pattern: bytes, seen: bytearray) -> re.Match[bytes]:
    """Read terminal output into *seen* until *pattern* (a regex) matches it."""
    with trio.fail_after(TIMEOUT):
        while (found := re.search(pattern, seen)) is None:
            frame = await conn.receive()
            assert frame is not None, f"terminal closed; output so far: {bytes(seen)!r}"
            if frame["op"] == "out":
                seen += base64.b64decode(frame["data"])
    return found


async def test_pty_runs_a_shell_with_resize_and_exit_code(runner: Runner) -> None:
    conn = await runner.connect()
    await conn.send({"op": "pty", "rows": 30, "cols": 100})
    started = await conn.receive()
    assert started is not None
    assert started["op"] == "pty-started"
    seen = bytearray()
    await conn.send({"op": "in", "data": b64(b"echo sum-$((40+2)); stty size; pwd\n")})
    await read_until(conn, re.escape(str(runner.work).encode() + b"\r\n"), seen)
    assert b"sum-42" in seen
    assert b"30 100" in seen
    await conn.send({"op": "resize", "rows": 50, "cols": 132})
    await conn.send({"op": "in", "data": b64(b"stty size\n")})
    await read_until(conn, b"50 132", seen)
    await conn.send({"op": "resize", "rows": 0, "cols": 1})
    with trio.fail_after(TIMEOUT):
        while (frame := await conn.receive())["op"] != "error":  # type: ignore[index]
            pass
    assert "invalid terminal size 0" in frame["message"]
    await conn.send({"op": "in", "data": b64(b"exit 7\n")})
    with trio.fail_after(TIMEOUT):
        while (frame := await conn.receive())["op"] != "exit":  # type: ignore[index]
            pass
    assert frame["code"] == 7
    assert await conn.receive() is None
    await conn.aclose()


async def test_pty_hangs_up_when_the_client_goes_away(runner: Runner) -> None:
    conn = await runner.connect()
    await conn.send({"op": "pty", "command": ["/bin/sh"]})
    await conn.receive()
    seen = bytearray()
    await conn.send({"op": "in", "data": b64(b"echo pid=$((1000000+$$))\n")})
    pid = int((await read_until(conn, rb"pid=1(\d{6})\r\n", seen)).group(1))
    await conn.aclose()
    with trio.fail_after(TIMEOUT):
        while _alive(pid):  # noqa: ASYNC110 (polling another process)
            await trio.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):  # gone (ESRCH: while being read)
        return False
