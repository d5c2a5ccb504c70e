"""What a workspace holds: counts per table, the current version, recent stages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mlx_rsi import registry
from mlx_rsi.workspace import Workspace, schema_version

COUNTED = ("files", "sessions", "messages", "examples", "datasets", "runs", "versions")


@dataclass
class WorkspaceStatus:
    root: str
    schema_version: int
    counts: dict[str, int]
    current_version: str | None
    latest_dataset: str | None
    recent_events: list[dict[str, Any]] = field(default_factory=list)
    interrupted_runs: list[str] = field(default_factory=list)


def workspace_status(ws: Workspace, recent: int = 8) -> WorkspaceStatus:
    conn = ws.store()
    try:
        counts = {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in COUNTED}
        latest = conn.execute(
            "SELECT name FROM datasets ORDER BY created_at DESC, rowid DESC LIMIT 1"
        ).fetchone()
        events = conn.execute(
            "SELECT stage, status, summary, finished_at FROM events ORDER BY id DESC LIMIT ?",
            (recent,),
        ).fetchall()
        interrupted = conn.execute(
            "SELECT id FROM runs WHERE status IN ('interrupted', 'running')"
        ).fetchall()
        return WorkspaceStatus(
            root=str(ws.root),
            schema_version=schema_version(conn),
            counts=counts,
            current_version=registry.current_version(conn),
            latest_dataset=latest[0] if latest else None,
            recent_events=[dict(e) for e in reversed(events)],
            interrupted_runs=[r[0] for r in interrupted],
        )
    finally:
        conn.close()
