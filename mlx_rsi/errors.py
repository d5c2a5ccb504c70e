"""One error family for everything the CLI reports as a single line.

Core code raises these with a message that says what is wrong, where, and how to
fix it; ``cli.main`` turns them into one line and an exit code (traceback only
with ``--debug``).
"""

from __future__ import annotations


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


class SourceError(MlxRsiError):
    """A session-log file or folder cannot be read as asked."""


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
