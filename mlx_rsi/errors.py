"""One error family for everything the CLI reports as a single line.

Core code raises these with a message that says what is wrong, where, and how to
fix it; ``cli.main`` turns them into one line and an exit code (traceback only
with ``--debug``).
"""

from __future__ import annotations

import errno
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class MlxRsiError(Exception):
    """Base of all errors mlx-rsi reports to the user."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message

    def __str__(self) -> str:
        return self.one_line()


class UsageError(MlxRsiError):
    """Bad flags or bad config: exit 2 like click's own usage errors."""

    exit_code = 2


class ConfigError(UsageError):
    """The configuration file is missing, unparsable or invalid."""


class WorkspaceError(MlxRsiError):
    """The workspace or its state store is missing, locked or inconsistent."""


class DatasetError(MlxRsiError):
    """A dataset cannot be built, found or read."""


class BackendError(MlxRsiError):
    """A training backend is unavailable or failed."""


class BackendUnavailableError(BackendError):
    """The requested backend cannot run here (missing package, no device)."""

    exit_code = 2


class ModelError(MlxRsiError):
    """A base model or adapter cannot be found or loaded."""


class InterruptedRun(MlxRsiError):
    """The user interrupted a run; its state was saved and it can be resumed."""

    exit_code = 130


class TargetExistsError(UsageError):
    """A writer was asked to create something that is already there (never replaced)."""


class DiskFullError(MlxRsiError):
    """The disk holding a workspace or output folder ran out of space."""


class NotWritableError(MlxRsiError):
    """A folder mlx-rsi must write to is read-only or not ours to write."""


# --------------------------------------------------------------------------- storage

_FULL_TEXTS = ("no space left on device", "database or disk is full", "os error 28", "storagefull")
_READ_ONLY_TEXTS = ("read-only file system", "readonly database", "os error 30")
# Errors that hide their cause (SQLite's shared-memory file, torch's zip writer): read
# as "disk full" only when the disk written to really has next to nothing left.
_VAGUE_WRITE_TEXTS = ("disk i/o error", "file write failed", "pytorchstreamwriter failed")
_NEARLY_FULL_BYTES = 1 << 20
_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_DENIED_ERRNOS = (errno.EACCES, errno.EPERM)


def storage_error(exc: BaseException, where: Path | str | None = None) -> MlxRsiError | None:
    """The one-line error a full, read-only or forbidden disk really is, else None.

    Looks through ``exc`` and its causes: an ``OSError`` by errno (ENOSPC, EROFS,
    EACCES), SQLite's "database or disk is full" / "readonly database", and the
    wrappers that only keep the OS text (safetensors, torch). ``where`` names the
    folder written when the error itself names no file.
    """
    for error in _chain(exc):
        place = _place(error, where)
        text = str(error).lower()
        code = error.errno if isinstance(error, OSError) else None
        vague = code == errno.EIO or any(t in text for t in _VAGUE_WRITE_TEXTS)
        full = code in _FULL_ERRNOS or any(t in text for t in _FULL_TEXTS)
        if full or (vague and _nearly_full(where)):
            return DiskFullError(
                f"the disk is full: no space left to write {place}",
                hint="free some space on that disk (or use --workspace on another one), "
                "then run the command again: finished stages are kept",
            )
        if code == errno.EROFS or any(t in text for t in _READ_ONLY_TEXTS):
            return NotWritableError(
                f"{place} is read-only: mlx-rsi cannot write there",
                hint="make it writable, or point --workspace at a writable folder",
            )
        if code in _DENIED_ERRNOS:
            return NotWritableError(
                f"no permission to write {place}",
                hint="check the folder's owner and permissions, or use another --workspace",
            )
    return None


def _nearly_full(where: Path | str | None) -> bool:
    if where is None:
        return False
    folder = Path(where)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free < _NEARLY_FULL_BYTES
    except OSError:
        return False


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 8:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _place(error: BaseException, where: Path | str | None) -> str:
    filename = getattr(error, "filename", None) if isinstance(error, OSError) else None
    if filename:
        return str(filename)
    return str(where) if where is not None else "the workspace"


@contextmanager
def storage_errors(where: Path | str | None = None) -> Iterator[None]:
    """Re-raise a full / read-only disk error met inside as its one-line MlxRsiError."""
    try:
        yield
    except MlxRsiError:
        raise
    except Exception as e:
        mapped = storage_error(e, where)
        if mapped is None:
            raise
        raise mapped from e
