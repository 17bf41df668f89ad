"""Tokens already exchanged for cookies, shared by the processes of one app proxy.

A token opens its app once.  With several worker processes on one port (and
across a restart of the proxy), each process must see every exchange: a token
spent is a file in a directory the processes share, named by the token's
hash, its mtime the token's expiry.  It is made under a temporary name, given
its mtime, then hard-linked to its name (a link fails if the name exists, so
exactly one process wins a race, and no one ever sees the file without its
expiry).  Expired files are removed now and then.  Without a directory (tests,
one process), a dict does the same in memory.  A failure to record (a full
disk, no descriptors left) is an OSError: the caller refuses the token.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
from pathlib import Path

__all__ = ["SpentTokens"]

log = logging.getLogger(__name__)

_SWEEP_EVERY = 200
_STALE_TEMP_SECONDS = 60.0


class SpentTokens:
    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory
        self._memory: dict[str, float] = {}
        self._spends = 0
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)

    def spend(self, token: str, exp: float, now: float) -> bool:
        """Record *token* (good until *exp*) as spent; False if it was spent already."""
        name = hashlib.sha256(token.encode()).hexdigest()
        self._spends += 1
        if self._spends % _SWEEP_EVERY == 0:
            self.sweep(now)
        if self.directory is None:
            if name in self._memory:
                return False
            self._memory[name] = exp
            return True
        path = self.directory / name
        tmp = self.directory / f".{name}.{os.getpid()}.{secrets.token_hex(4)}"
        os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        try:
            os.utime(tmp, (exp, exp))
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
            return True
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def sweep(self, now: float) -> None:
        """Forget the tokens that have expired (they are refused as expired anyway)."""
        if self.directory is None:
            self._memory = {n: e for n, e in self._memory.items() if e >= now}
            return
        try:
            entries = list(os.scandir(self.directory))
        except OSError as e:
            log.warning("cannot sweep the spent tokens in %s: %s", self.directory, e)
            return
        for entry in entries:
            with contextlib.suppress(OSError):
                st = entry.stat()
                if entry.name.startswith("."):  # a temporary name left by a crash
                    if st.st_ctime < now - _STALE_TEMP_SECONDS:
                        os.unlink(entry.path)
                elif st.st_mtime < now:
                    os.unlink(entry.path)
