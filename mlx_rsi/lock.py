"""Workspace locks: one writer per workspace, one daemon per workspace.

A lock is an ``fcntl.flock`` on ``<workspace>/<name>.lock``. The kernel drops it
when the holding process dies (kill -9 included), so a crash never leaves a
workspace locked; a lock file left by a dead process is taken over with a log
line. The file also holds a JSON record of the holder (pid, command, start
time) so the refused process can say who holds it.

Two names are used: ``workspace`` (held by every command that writes, and by
the daemon only while it ingests or runs a cycle) and ``daemon`` (held by
``mlx-rsi watch`` for its whole life).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from mlx_rsi.errors import MlxRsiError

log = logging.getLogger(__name__)


class LockHeldError(MlxRsiError):
    """Another live process holds the lock."""


@dataclass(frozen=True)
class LockHolder:
    pid: int
    command: str
    started_at: str

    def describe(self) -> str:
        return f"PID {self.pid} ({self.command}, since {self.started_at})"


def lock_path(root: Path, name: str = "workspace") -> Path:
    return Path(root) / f"{name}.lock"


def lock_holder(root: Path, name: str = "workspace") -> LockHolder | None:
    """The live holder of lock ``name``, or None when nobody holds it."""
    path = lock_path(root, name)
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_holder(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)  # nobody holds it: the record is stale
        return None
    finally:
        os.close(fd)


class WorkspaceLock:
    """Context manager holding ``<root>/<name>.lock`` for this process."""

    def __init__(self, root: Path, command: str, name: str = "workspace") -> None:
        self.root = Path(root)
        self.command = command
        self.name = name
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        if self._fd is not None:
            return
        path = lock_path(self.root, self.name)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise LockHeldError(
                f"cannot create the {self.name} lock {path}: {e.strerror}",
                hint="check that the workspace folder exists and is writable",
            ) from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            who = holder.describe() if holder else "another process"
            raise LockHeldError(
                f"the workspace {self.root} is busy: {who} holds its {self.name} lock",
                hint="wait for it to finish, or stop it (mlx-rsi watch stop for the daemon)",
            ) from None
        stale = _read_holder(fd)
        if stale is not None and stale.pid != os.getpid():
            log.warning("taking over the %s lock left by %s", self.name, stale.describe())
        self._fd = fd  # held from here on: release() must run even if the record fails
        try:
            _write_holder(fd, LockHolder(os.getpid(), self.command, _now()))
        except OSError as e:  # a full disk: the flock alone still excludes other writers
            log.info("cannot record the %s lock holder in %s: %s", self.name, path, e)

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # an empty file says "free" to a reader
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def __enter__(self) -> WorkspaceLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _read_holder(fd: int) -> LockHolder | None:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        raw = os.read(fd, 4096)
        data = json.loads(raw) if raw.strip() else None
        if not isinstance(data, dict):
            return None
        return LockHolder(int(data["pid"]), str(data["command"]), str(data["started_at"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_holder(fd: int, holder: LockHolder) -> None:
    record = {"pid": holder.pid, "command": holder.command, "started_at": holder.started_at}
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, json.dumps(record).encode("utf-8"))
    os.fsync(fd)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
