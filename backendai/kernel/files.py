"""File operations on the kernel's work directory: write, read, list, archive.

Every path goes through :mod:`.paths` (no ``..``, no absolute path elsewhere,
no symlink escape).  Uploads are connection-scoped: the chunks of one file go
to a hidden temporary file beside it, which is renamed into place on the
``final`` chunk and removed if the connection closes first, so a broken upload
never leaves a half-written file behind.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import os
import secrets
import stat
import tarfile
from collections.abc import Iterator
from typing import Any

from .paths import PathError, normalize, prepare_parent, resolve
from .wire import Connection, error

READ_CHUNK = 1024 * 1024
ARCHIVE_CHUNK = 256 * 1024
MAX_ENTRIES = 10000
_TYPES = {stat.S_IFDIR: "dir", stat.S_IFREG: "file", stat.S_IFLNK: "symlink"}


def os_error(shown: object, e: OSError) -> dict[str, Any]:
    if e.errno == errno.ENOENT:
        return error("not-found", f"no such file or directory: {shown!r}")
    if e.errno in (errno.EISDIR, errno.ENOTDIR):
        return error("bad-path", f"{shown!r}: {e.strerror}")
    return error("io-error", f"{shown!r}: {e.strerror or e}")


class Upload:
    """The file a connection is writing: a temporary file until its final chunk."""

    def __init__(self, rel: str, full: str) -> None:
        self.rel = rel
        self.full = full
        directory, name = os.path.split(full)
        self.tmp = os.path.join(directory, f".{name}.upload-{secrets.token_hex(4)}")
        self.fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        self.size = 0

    def abort(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp)

    def finish(self) -> None:
        os.close(self.fd)
        self.fd = -1
        os.replace(self.tmp, self.full)


class FileOps:
    def __init__(self, workdir: str) -> None:
        self.workdir = workdir

    def write(self, conn: Connection, request: dict[str, Any]) -> dict[str, Any]:
        path, offset = request.get("path"), request.get("offset", 0)
        try:
            rel = normalize(self.workdir, path)
            data = base64.b64decode(request.get("data") or "", validate=True)
        except PathError as e:
            return error("bad-path", str(e))
        except (ValueError, TypeError) as e:
            return error("bad-request", f"write-file: data is not base64: {e}")
        upload: Upload | None = conn.state.get("upload")
        if upload is not None and (upload.rel != rel or offset != upload.size):
            upload.abort()
            conn.state.pop("upload", None)
            if upload.rel != rel:
                upload = None
            else:
                return error(
                    "bad-request",
                    f"write-file {path!r}: offset {offset!r} does not match the "
                    f"{upload.size} bytes written so far; the upload was abandoned",
                )
        try:
            if upload is None:
                if offset != 0:
                    return error(
                        "bad-request", f"write-file {path!r}: an upload starts at offset 0"
                    )
                full = resolve(self.workdir, rel)
                if rel == "." or os.path.isdir(full):
                    return error("bad-path", f"write-file {path!r}: is a directory")
                prepare_parent(self.workdir, full, path)
                upload = Upload(rel, full)
                conn.state["upload"] = upload
                conn.on_close.append(upload.abort)
            while data:
                written = os.write(upload.fd, data)
                data = data[written:]
                upload.size += written
            if request.get("final"):
                upload.finish()
                conn.state.pop("upload", None)
        except PathError as e:
            return error("bad-path", str(e))
        except OSError as e:
            if upload is not None:
                upload.abort()
                conn.state.pop("upload", None)
            return os_error(path, e)
        return {
            "op": "written",
            "path": rel,
            "size": upload.size,
            "final": bool(request.get("final")),
        }

    def read(self, conn: Connection, request: dict[str, Any]) -> dict[str, Any]:
        path = request.get("path")
        offset, length = request.get("offset", 0), request.get("length", READ_CHUNK)
        if not isinstance(offset, int) or offset < 0 or not isinstance(length, int) or length < 0:
            return error("bad-request", f"read-file: bad offset {offset!r} or length {length!r}")
        try:
            full = resolve(self.workdir, path)
            with open(full, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                f.seek(offset)
                data = f.read(min(length, READ_CHUNK))
        except PathError as e:
            return error("bad-path", str(e))
        except OSError as e:
            return os_error(path, e)
        end = offset + len(data)
        return {
            "op": "file-data",
            "data": base64.b64encode(data).decode("ascii"),
            "offset": offset,
            "size": size,
            "eof": end >= size or not data,
        }

    def list(self, conn: Connection, request: dict[str, Any]) -> dict[str, Any]:
        path = request.get("path") or "."
        try:
            full = resolve(self.workdir, path)
            names = sorted(os.listdir(full))
        except PathError as e:
            return error("bad-path", str(e))
        except OSError as e:
            return os_error(path, e)
        entries = []
        for name in names[:MAX_ENTRIES]:
            try:
                st = os.lstat(os.path.join(full, name))
            except OSError:
                continue  # removed meanwhile
            entries.append(
                {
                    "name": name,
                    "type": _TYPES.get(stat.S_IFMT(st.st_mode), "other"),
                    "size": st.st_size,
                    "mode": stat.filemode(st.st_mode),
                    "mtime": st.st_mtime,
                }
            )
        return {
            "op": "files",
            "path": normalize(self.workdir, path),
            "abspath": full,
            "files": entries,
            "truncated": len(names) > MAX_ENTRIES,
        }

    def archive(self, conn: Connection, request: dict[str, Any]) -> dict[str, Any]:
        """Stream a tar of a file or directory: ``archive-started``, ``data``..., then ``end``."""
        path = request.get("path") or "."
        try:
            full = resolve(self.workdir, path)
            os.stat(full)
        except PathError as e:
            return error("bad-path", str(e))
        except OSError as e:
            return os_error(path, e)
        rel = normalize(self.workdir, path)
        conn.send({"op": "archive-started", "path": rel})
        sink = _ChunkSink(conn)
        skipped = 0
        with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
            top = os.path.basename(rel) if rel != "." else "."
            for source, arcname in _walk(full, top):
                try:
                    tar.add(source, arcname=arcname, recursive=False)
                except OSError:
                    skipped += 1  # unreadable or removed meanwhile
        sink.flush()
        return {"op": "end", "size": sink.total, "skipped": skipped}


def _walk(full: str, top: str) -> Iterator[tuple[str, str]]:
    yield full, top
    if os.path.isdir(full) and not os.path.islink(full):
        for dirpath, dirnames, filenames in os.walk(full):
            dirnames.sort()
            rel_dir = os.path.relpath(dirpath, full)
            for name in dirnames + sorted(filenames):
                arc = os.path.normpath(os.path.join(top, rel_dir, name))
                yield os.path.join(dirpath, name), arc


class _ChunkSink:
    """A write-only file object turning tar bytes into ``data`` frames (blocking send)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.buf = bytearray()
        self.total = 0

    def write(self, data: bytes) -> int:
        self.buf += data
        self.total += len(data)
        if len(self.buf) >= ARCHIVE_CHUNK:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self.buf:
            self.conn.send({"op": "data", "data": base64.b64encode(bytes(self.buf)).decode()})
            self.buf.clear()
