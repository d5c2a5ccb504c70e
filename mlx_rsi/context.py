"""What every command gets from the global options: workspace, config, verbosity."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mlx_rsi.config import Config, load_config
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
