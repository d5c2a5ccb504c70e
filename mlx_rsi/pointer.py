"""Moving the current pointer by hand: ``promote vX [--force]`` and ``rollback [vX]``.

Each move is one SQLite transaction (``registry.make_current`` plus the statuses),
so a kill at any moment leaves exactly one current version. Artifacts are never
deleted: a rolled-back version keeps its models and reports, marked
``rolled_back`` so that a second ``rollback`` goes further back instead of
returning to it. A version the gate rejected is promoted only with ``force``;
one without a fused model is fused first (from its run's adapter).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from mlx_rsi import atomic, registry
from mlx_rsi.config import Config
from mlx_rsi.errors import UsageError, WorkspaceError
from mlx_rsi.workspace import Workspace, transaction

ROLLED_BACK = "rolled_back"


@dataclass(frozen=True)
class Move:
    previous: str | None
    current: str
    fused: bool = False  # the model was fused for this move

    def summary(self, verb: str) -> str:
        was = f" (was {self.previous or 'base'})"
        return f"{verb}: {self.current} is now current{was}" + (
            "; fused its adapter first" if self.fused else ""
        )


def promote_version(ws: Workspace, cfg: Config, name: str, *, force: bool) -> Move:
    conn = ws.store()
    try:
        version = registry.get_version(conn, name)
        if version is None:
            raise UsageError(f"no version '{name}'", hint="see `mlx-rsi versions`")
        accepted = bool((version.eval or {}).get("promote"))
        if not accepted and not force and version.status not in ("current", "retired"):
            reason = (version.eval or {}).get("reason") or "it was never evaluated"
            raise UsageError(
                f"{name} was not accepted by the gate: {reason}",
                hint=f"`mlx-rsi promote {name} --force` promotes it anyway",
            )
        fused = _ensure_fused(ws, cfg, conn, name, version.run_id)
        with transaction(conn):
            previous = registry.make_current(conn, name)
            if fused:
                registry.add_artifacts(conn, name, {"hf": str(_fused_dir(ws, name))})
        return Move(previous, name, fused)
    finally:
        conn.close()


def rollback(ws: Workspace, target: str | None) -> Move:
    conn = ws.store()
    try:
        current = registry.current_version(conn)
        if current is None:
            raise UsageError("nothing to roll back: no version is current")
        name = target or _previous(conn, current)
        if name == current:
            raise UsageError(f"{name} is already current")
        if registry.get_version(conn, name) is None:
            raise UsageError(f"no version '{name}'", hint="see `mlx-rsi versions`")
        if not (_fused_dir(ws, name) / "config.json").is_file():
            raise WorkspaceError(
                f"{name} has no fused model at {_fused_dir(ws, name)}",
                hint=f"`mlx-rsi promote {name} --force` fuses and promotes it",
            )
        with transaction(conn):
            registry.make_current(conn, name)
            registry.set_status(conn, current, ROLLED_BACK)
        return Move(current, name)
    finally:
        conn.close()


def _previous(conn: sqlite3.Connection, current: str) -> str:
    """The version that was current before ``current``: the latest retired one."""
    row = conn.execute(
        "SELECT name FROM versions WHERE status = 'retired' AND name != ? "
        "ORDER BY updated_at DESC, name DESC LIMIT 1",
        (current,),
    ).fetchone()
    if row is None:
        raise UsageError(
            f"no earlier version to roll back to from {current}",
            hint="name one: `mlx-rsi rollback vX` (see `mlx-rsi versions`)",
        )
    return str(row[0])


def _fused_dir(ws: Workspace, name: str) -> Path:
    return ws.models_dir / name / "hf"


def _ensure_fused(
    ws: Workspace, cfg: Config, conn: sqlite3.Connection, name: str, run_id: str | None
) -> bool:
    """Fuse the version's adapter into models/<name>/hf when it is not there yet."""
    target = _fused_dir(ws, name)
    if (target / "config.json").is_file():
        return False
    from backends.base import get_backend
    from mlx_rsi.eval.models import run_adapter
    from mlx_rsi.modelpath import resolve_base_model

    adapter = run_adapter(conn, run_id)
    if adapter is None:
        raise WorkspaceError(f"{name} has no fused model and no trained adapter to fuse")
    backend = get_backend(cfg.train.backend)
    base = resolve_base_model(cfg.base_model, ws.root)
    with atomic.staged_dir(target) as staging:
        backend.fuse(base, adapter, staging)
    return True
