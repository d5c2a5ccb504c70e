"""What a workspace holds: counts per table, the current version, the last cycle, stages.

``status`` is a reader: it runs while a cycle does, so a ``running`` run, cycle
or event is called running only while a live process holds the workspace lock
(mlx_rsi.lock); otherwise that process died and the row is shown as interrupted
(the next ``train`` finishes the cycle and closes the rows).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mlx_rsi import registry, store
from mlx_rsi.lock import lock_holder
from mlx_rsi.workspace import Workspace, schema_version


@dataclass
class WorkspaceStatus:
    root: str
    schema_version: int
    counts: dict[str, int]
    current_version: str | None
    latest_dataset: str | None
    recent_events: list[dict[str, Any]] = field(default_factory=list)
    interrupted_runs: list[str] = field(default_factory=list)
    running: str | None = None  # the live writer holding the workspace lock
    unfinished_cycle: dict[str, Any] | None = None  # version, completed stages


def workspace_status(ws: Workspace, recent: int = 8) -> WorkspaceStatus:
    holder = lock_holder(ws.root)
    live = holder is not None
    conn = ws.store()
    try:
        events = store.recent_events(conn, recent)
        if not live:
            for event in events:
                if event["status"] == "running":
                    event["status"] = "interrupted"
        return WorkspaceStatus(
            root=str(ws.root),
            schema_version=schema_version(conn),
            counts=store.table_counts(conn),
            current_version=registry.current_version(conn),
            latest_dataset=store.latest_dataset(conn),
            recent_events=events,
            interrupted_runs=[] if live else store.unfinished_runs(conn),
            running=holder.describe() if holder else None,
            unfinished_cycle=None if live else _unfinished(conn),
        )
    finally:
        conn.close()


def _unfinished(conn: Any) -> dict[str, Any] | None:
    """The cycle a killed or failed run left for the next ``train`` to finish."""
    cycles = store.unfinished_cycles(conn)
    if not cycles or not (cycles[0].completed or cycles[0].version):
        return None
    cycle = cycles[0]
    return {
        "id": cycle.id,
        "version": cycle.version,
        "dataset": cycle.dataset,
        "run": cycle.run_id,
        "completed": list(cycle.completed),
    }
