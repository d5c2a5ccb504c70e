"""Which model a version name means, for ``mlx-rsi eval`` and ``diff``.

``base`` is the configured base model; ``current`` the promoted version (the base
when none is); ``vX`` its fused model (``models/vX/hf``) when it has one, else the
base model plus its run's adapter (a rejected candidate can still be evaluated).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from mlx_rsi import registry
from mlx_rsi.config import Config
from mlx_rsi.errors import UsageError
from mlx_rsi.eval.runner import ModelRef
from mlx_rsi.workspace import Workspace


def resolve_model(ws: Workspace, conn: sqlite3.Connection, cfg: Config, name: str) -> ModelRef:
    """The model for ``name`` (base, current or a version name)."""
    if name == "current":
        current = registry.current_version(conn)
        return resolve_model(ws, conn, cfg, current) if current else _base(ws, cfg)
    if name in ("base", registry.BASE_VERSION):
        return _base(ws, cfg)
    version = registry.get_version(conn, name)
    if version is None:
        known = ", ".join(v.name for v in registry.list_versions(conn)) or "none yet"
        raise UsageError(f"no version '{name}'", hint=f"versions: {known}; or base, current")
    fused = ws.models_dir / name / "hf"
    if (fused / "config.json").is_file():
        return ModelRef(name, fused)
    adapter = run_adapter(conn, version.run_id)
    if adapter is None:
        raise UsageError(
            f"version {name} has neither a fused model nor a trained adapter",
            hint="its run did not finish; run `mlx-rsi train` again",
        )
    return ModelRef(name, _base(ws, cfg).model_dir, adapter)


def run_adapter(conn: sqlite3.Connection, run_id: str | None) -> Path | None:
    if not run_id:
        return None
    row = conn.execute("SELECT adapter_dir FROM runs WHERE id = ?", (run_id,)).fetchone()
    if row is None or not row[0] or not Path(row[0]).is_dir():
        return None
    return Path(row[0])


def version_dataset_dir(conn: sqlite3.Connection, name: str) -> Path | None:
    """The folder of the dataset ``name`` was trained on (None for base / unknown)."""
    version = registry.get_version(conn, name)
    if version is None or not version.dataset:
        return None
    row = conn.execute("SELECT path FROM datasets WHERE name = ?", (version.dataset,)).fetchone()
    return Path(row[0]) if row and Path(row[0]).is_dir() else None


def version_run_dir(ws: Workspace, conn: sqlite3.Connection, name: str) -> Path | None:
    version = registry.get_version(conn, name)
    if version is None or not version.run_id:
        return None
    folder = ws.runs_dir / version.run_id
    return folder if folder.is_dir() else None


def _base(ws: Workspace, cfg: Config) -> ModelRef:
    from mlx_rsi.modelpath import resolve_base_model

    return ModelRef("base", resolve_base_model(cfg.base_model, ws.root))
