"""Model versions: names, lineage, the current pointer, promotion and rollback.

Versions are named like the seed guide's: the base model is ``v1.0``; each cycle
produces the next minor version (``v1.1``, ``v1.2`` …), and its dataset carries
the same name. A version is a *candidate* until evaluated, then *current*
(promoted) or *rejected*; a current version that is replaced becomes *retired*.
"""

from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from mlx_rsi.errors import WorkspaceError
from mlx_rsi.workspace import now_iso, transaction

BASE_VERSION = "v1.0"
_NAME = re.compile(r"^v(\d+)\.(\d+)$")


@dataclass
class Version:
    name: str
    status: str
    parent: str | None = None
    dataset: str | None = None
    run_id: str | None = None
    eval: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)
    created_at: str | None = None


def parse_name(name: str) -> tuple[int, int]:
    match = _NAME.match(name)
    if not match:
        raise WorkspaceError(f"'{name}' is not a version name", hint="versions look like v1.2")
    return int(match.group(1)), int(match.group(2))


def next_version_name(conn: sqlite3.Connection) -> str:
    """The name after the highest version or dataset recorded (v1.1 in a new workspace)."""
    names = [
        r[0] for r in conn.execute("SELECT name FROM versions UNION SELECT name FROM datasets")
    ]
    known = [parse_name(n) for n in names if _NAME.match(n)]
    major, minor = max(known, default=parse_name(BASE_VERSION))
    return f"v{major}.{minor + 1}"


def current_version(conn: sqlite3.Connection) -> str | None:
    row = conn.execute("SELECT name FROM current_version WHERE singleton = 1").fetchone()
    return row[0] if row else None


def get_version(conn: sqlite3.Connection, name: str) -> Version | None:
    row = conn.execute("SELECT * FROM versions WHERE name = ?", (name,)).fetchone()
    return _from_row(row) if row else None


def list_versions(conn: sqlite3.Connection) -> list[Version]:
    rows = conn.execute("SELECT * FROM versions ORDER BY created_at, name").fetchall()
    return [_from_row(r) for r in rows]


def record_version(conn: sqlite3.Connection, version: Version) -> None:
    """Insert or update a version row (its artifacts and eval as JSON)."""
    stamp = now_iso()
    with transaction(conn):
        conn.execute(
            """INSERT INTO versions
               (name, parent, dataset, run_id, status, eval, artifacts, created_at, updated_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT(name) DO UPDATE SET parent=excluded.parent, dataset=excluded.dataset,
               run_id=excluded.run_id, status=excluded.status, eval=excluded.eval,
               artifacts=excluded.artifacts, updated_at=excluded.updated_at""",
            (
                version.name,
                version.parent,
                version.dataset,
                version.run_id,
                version.status,
                json.dumps(version.eval),
                json.dumps(version.artifacts),
                version.created_at or stamp,
                stamp,
            ),
        )


def promote(conn: sqlite3.Connection, name: str) -> str | None:
    """Make ``name`` current; the previous current becomes retired. Returns the previous."""
    previous = current_version(conn)
    with transaction(conn):
        if previous and previous != name:
            conn.execute(
                "UPDATE versions SET status = 'retired', updated_at = ? WHERE name = ?",
                (now_iso(), previous),
            )
        conn.execute(
            "UPDATE versions SET status = 'current', updated_at = ? WHERE name = ?",
            (now_iso(), name),
        )
        conn.execute(
            "INSERT INTO current_version VALUES (1, ?) ON CONFLICT(singleton) DO UPDATE "
            "SET name = excluded.name",
            (name,),
        )
    return previous


def _from_row(row: sqlite3.Row) -> Version:
    return Version(
        name=row["name"],
        status=row["status"],
        parent=row["parent"],
        dataset=row["dataset"],
        run_id=row["run_id"],
        eval=json.loads(row["eval"] or "{}"),
        artifacts=json.loads(row["artifacts"] or "{}"),
        created_at=row["created_at"],
    )
