"""The state store's queries for cycles, their stages, runs, datasets and events.

DESIGN.md: stages and the cycle never write SQL; they call these functions. A
cycle is one row in ``cycles`` (running → done | abandoned); each stage whose
completion must survive a crash has a row in ``cycle_stages`` holding its result
(JSON), written in the same transaction as the stage's own store changes and its
``events`` row, so a kill -9 leaves a stage either wholly recorded or not at all.
Versions and the current pointer are the registry's (``mlx_rsi.registry``);
sessions are the session store's.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlx_rsi.workspace import now_iso, transaction

Commit = Callable[[sqlite3.Connection], object]

# --------------------------------------------------------------------------- cycles


@dataclass
class Cycle:
    """One improvement cycle as recorded; ``completed`` maps stage name → its result."""

    id: str
    status: str
    version: str | None = None
    dataset: str | None = None
    dataset_built: bool = False  # the cycle wrote datasets/<dataset> itself
    run_id: str | None = None
    completed: dict[str, dict[str, Any]] = field(default_factory=dict)


def create_cycle(conn: sqlite3.Connection, cycle_id: str) -> Cycle:
    stamp = now_iso()
    with transaction(conn):
        conn.execute(
            "INSERT INTO cycles (id, status, created_at, updated_at) VALUES (?, 'running', ?, ?)",
            (cycle_id, stamp, stamp),
        )
    return Cycle(cycle_id, "running")


def unfinished_cycles(conn: sqlite3.Connection) -> list[Cycle]:
    """Cycles neither done nor abandoned, newest first."""
    rows = conn.execute(
        "SELECT * FROM cycles WHERE status = 'running' ORDER BY created_at DESC, rowid DESC"
    ).fetchall()
    return [_cycle(conn, row) for row in rows]


def latest_cycle(conn: sqlite3.Connection) -> Cycle | None:
    row = conn.execute("SELECT * FROM cycles ORDER BY created_at DESC, rowid DESC LIMIT 1")
    found = row.fetchone()
    return _cycle(conn, found) if found else None


def claim_dataset(
    conn: sqlite3.Connection, cycle_id: str, version: str, dataset: str, *, built: bool
) -> None:
    """Fix the cycle's version and dataset names (``built``: it writes the dataset itself)."""
    with transaction(conn):
        conn.execute(
            "UPDATE cycles SET version = ?, dataset = ?, dataset_built = ?, updated_at = ? "
            "WHERE id = ?",
            (version, dataset, int(built), now_iso(), cycle_id),
        )


def set_cycle_run(conn: sqlite3.Connection, cycle_id: str, run_id: str) -> None:
    """Inside the caller's transaction: the run that trains this cycle's adapter."""
    conn.execute(
        "UPDATE cycles SET run_id = ?, updated_at = ? WHERE id = ?", (run_id, now_iso(), cycle_id)
    )


def finish_cycle(conn: sqlite3.Connection, cycle_id: str, status: str = "done") -> None:
    with transaction(conn):
        conn.execute(
            "UPDATE cycles SET status = ?, updated_at = ? WHERE id = ?",
            (status, now_iso(), cycle_id),
        )


def complete_stage(
    conn: sqlite3.Connection,
    cycle_id: str,
    stage: str,
    *,
    result: dict[str, Any] | None,
    event_id: int | None,
    summary: str,
    commit: Commit | None = None,
) -> None:
    """One transaction: the stage's store changes, its completion record, its event row.

    ``result`` None: the stage is not recorded (it is redone whenever the cycle
    passes it again).
    """
    with transaction(conn):
        if commit is not None:
            commit(conn)
        if result is not None:
            conn.execute(
                "INSERT OR REPLACE INTO cycle_stages (cycle_id, stage, result, finished_at) "
                "VALUES (?, ?, ?, ?)",
                (cycle_id, stage, json.dumps(result), now_iso()),
            )
        if event_id is not None:
            _end_event(conn, event_id, "done", summary)


def _cycle(conn: sqlite3.Connection, row: sqlite3.Row) -> Cycle:
    stages = conn.execute(
        "SELECT stage, result FROM cycle_stages WHERE cycle_id = ? ORDER BY finished_at, rowid",
        (row["id"],),
    ).fetchall()
    return Cycle(
        id=row["id"],
        status=row["status"],
        version=row["version"],
        dataset=row["dataset"],
        dataset_built=bool(row["dataset_built"]),
        run_id=row["run_id"],
        completed={s["stage"]: json.loads(s["result"]) for s in stages},
    )


# --------------------------------------------------------------------------- events


def start_event(conn: sqlite3.Connection, cycle_id: str | None, stage: str) -> int:
    with transaction(conn):
        cursor = conn.execute(
            "INSERT INTO events (cycle_id, stage, status, started_at) VALUES (?, ?, 'running', ?)",
            (cycle_id, stage, now_iso()),
        )
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def end_event(conn: sqlite3.Connection, event_id: int, status: str, summary: str) -> None:
    with transaction(conn):
        _end_event(conn, event_id, status, summary)


def _end_event(conn: sqlite3.Connection, event_id: int, status: str, summary: str) -> None:
    conn.execute(
        "UPDATE events SET status = ?, summary = ?, finished_at = ? WHERE id = ?",
        (status, summary, now_iso(), event_id),
    )


def close_stale_events(conn: sqlite3.Connection) -> int:
    """Mark ``running`` events as interrupted; call only while holding the workspace lock."""
    with transaction(conn):
        cursor = conn.execute(
            "UPDATE events SET status = 'interrupted', "
            "summary = COALESCE(summary, 'the process stopped before the stage ended'), "
            "finished_at = ? WHERE status = 'running'",
            (now_iso(),),
        )
    return cursor.rowcount


def recent_events(conn: sqlite3.Connection, limit: int) -> list[dict[str, Any]]:
    """The last ``limit`` events, oldest first."""
    rows = conn.execute(
        "SELECT stage, status, summary, started_at, finished_at FROM events "
        "ORDER BY id DESC LIMIT ?",
        (limit,),
    ).fetchall()
    return [dict(row) for row in reversed(rows)]


# --------------------------------------------------------------------------- runs


@dataclass
class RunRow:
    id: str
    backend: str
    dataset: str | None
    status: str
    step: int
    out_dir: Path
    adapter_dir: Path | None
    result: dict[str, Any] | None


def get_run(conn: sqlite3.Connection, run_id: str) -> RunRow | None:
    row = conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
    if row is None:
        return None
    return RunRow(
        id=row["id"],
        backend=row["backend"],
        dataset=row["dataset"],
        status=row["status"],
        step=row["step"],
        out_dir=Path(row["out_dir"]),
        adapter_dir=Path(row["adapter_dir"]) if row["adapter_dir"] else None,
        result=json.loads(row["result"]) if row["result"] else None,
    )


def get_run_spec(conn: sqlite3.Connection, run_id: str) -> dict[str, Any] | None:
    """The TrainSpec record the run was started with (``backends.base.spec_to_dict``)."""
    row = conn.execute("SELECT spec FROM runs WHERE id = ?", (run_id,)).fetchone()
    if row is None or not row["spec"]:
        return None
    spec: dict[str, Any] = json.loads(row["spec"])
    return spec


def record_run(
    conn: sqlite3.Connection,
    run_id: str,
    *,
    backend: str,
    dataset: str,
    spec: dict[str, Any],
    out_dir: Path,
) -> None:
    """Insert the run as ``running`` (or mark an existing one running again)."""
    stamp = now_iso()
    with transaction(conn):
        conn.execute(
            """INSERT INTO runs
               (id, backend, dataset, spec, status, out_dir, created_at, updated_at)
               VALUES (?, ?, ?, ?, 'running', ?, ?, ?)
               ON CONFLICT(id) DO UPDATE SET status = excluded.status,
               spec = excluded.spec, updated_at = excluded.updated_at""",
            (run_id, backend, dataset, json.dumps(spec), str(out_dir), stamp, stamp),
        )


def set_run_status(conn: sqlite3.Connection, run_id: str, status: str) -> None:
    with transaction(conn):
        conn.execute(
            "UPDATE runs SET status = ?, updated_at = ? WHERE id = ?", (status, now_iso(), run_id)
        )


def set_run_step(conn: sqlite3.Connection, run_id: str, step: int) -> None:
    """The step a running run has reached (written now and then while it trains)."""
    with transaction(conn):
        conn.execute(
            "UPDATE runs SET step = ?, updated_at = ? WHERE id = ?", (step, now_iso(), run_id)
        )


def finish_run(
    conn: sqlite3.Connection, run_id: str, step: int, adapter_dir: Path, result: dict[str, Any]
) -> None:
    with transaction(conn):
        conn.execute(
            "UPDATE runs SET status = 'done', step = ?, adapter_dir = ?, result = ?, "
            "updated_at = ? WHERE id = ?",
            (step, str(adapter_dir), json.dumps(result), now_iso(), run_id),
        )


def unfinished_runs(conn: sqlite3.Connection) -> list[str]:
    """Runs left ``running`` or ``interrupted`` (running only while a writer holds the lock)."""
    rows = conn.execute(
        "SELECT id FROM runs WHERE status IN ('running', 'interrupted') ORDER BY created_at, id"
    ).fetchall()
    return [row[0] for row in rows]


# --------------------------------------------------------------------------- datasets


def dataset_path(conn: sqlite3.Connection, name: str) -> Path | None:
    """The folder of the registered dataset ``name``, or None when none is registered."""
    row = conn.execute("SELECT path FROM datasets WHERE name = ?", (name,)).fetchone()
    return Path(row[0]) if row else None


def latest_dataset(conn: sqlite3.Connection) -> str | None:
    row = conn.execute("SELECT name FROM datasets ORDER BY created_at DESC, rowid DESC LIMIT 1")
    found = row.fetchone()
    return found[0] if found else None


# --------------------------------------------------------------------------- counts

COUNTED = ("files", "sessions", "messages", "examples", "datasets", "runs", "versions")


def table_counts(conn: sqlite3.Connection) -> dict[str, int]:
    """Rows per table of :data:`COUNTED` (fixed names, never user input)."""
    return {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in COUNTED}
