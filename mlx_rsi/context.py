"""What every command gets from the global options: workspace, config, verbosity.

Commands that write hold the workspace lock (:meth:`AppContext.writing`) for their
whole run, so two writers never share a cycle; readers never take it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from mlx_rsi.config import Config, load_config
from mlx_rsi.errors import WorkspaceError
from mlx_rsi.lock import WorkspaceLock
from mlx_rsi.workspace import Workspace, resolve_workspace


@dataclass
class AppContext:
    workspace_option: Path | None = None
    config_option: Path | None = None
    debug: bool = False
    verbose: int = 0
    quiet: bool = False
    _config: Config | None = field(default=None, repr=False)

    @property
    def workspace(self) -> Workspace:
        return resolve_workspace(self.workspace_option)

    @property
    def config_path(self) -> Path | None:
        """--config, else the workspace's mlx-rsi.yaml if present, else None (defaults)."""
        if self.config_option is not None:
            return self.config_option
        candidate = self.workspace.config_path
        return candidate if candidate.exists() else None

    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config

    @contextmanager
    def writing(self, command: str, *, creates: bool = False) -> Iterator[None]:
        """Hold the workspace lock while ``command`` writes (LockHeldError when taken).

        ``creates``: the command makes the workspace, so its folder is made first.
        Without it, a missing workspace is left for the command to report.
        """
        root = self.workspace.root
        if root.exists() and not root.is_dir():
            raise WorkspaceError(
                f"{root} is a file, not a workspace folder",
                hint="pass --workspace with a folder (new or existing)",
            )
        if creates:
            root.mkdir(parents=True, exist_ok=True)
        if not root.is_dir():
            yield
            return
        with WorkspaceLock(root, command):
            yield
