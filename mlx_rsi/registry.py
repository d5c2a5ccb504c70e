"""Model versions: names, lineage, the current pointer, promotion and rollback.

Versions are named like the seed guide's: the base model is ``v1.0``; each cycle
produces the next minor version (``v1.1``, ``v1.2`` …), and its dataset carries
the same name. A version is *training* while its adapter trains, a *candidate*
once evaluated and accepted by the gate, then *current* (promoted) or *rejected*;
a current version that is replaced becomes *retired*, and one whose cycle was
given up (``train --fresh``) *abandoned*.

The current pointer and the versions' statuses change together in one
transaction (:func:`make_current`), so there is never more than one current
version, whatever moment a process is killed at. Functions that take part in a
caller's transaction say so; the others open their own.
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
    """The name after the highest version, dataset or unfinished cycle's (v1.1 at first)."""
    names = [
        r[0]
        for r in conn.execute(
            "SELECT name FROM versions UNION SELECT name FROM datasets "
            "UNION SELECT version FROM cycles WHERE status = 'running' AND version IS NOT NULL"
        )
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
    with transaction(conn):
        upsert_version(conn, version)


def upsert_version(conn: sqlite3.Connection, version: Version) -> None:
    """:func:`record_version` inside the caller's transaction."""
    stamp = now_iso()
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


def set_status(conn: sqlite3.Connection, name: str, status: str) -> None:
    """Inside the caller's transaction: a version's status (never 'current': see promote)."""
    conn.execute(
        "UPDATE versions SET status = ?, updated_at = ? WHERE name = ?", (status, now_iso(), name)
    )


def add_artifacts(conn: sqlite3.Connection, name: str, artifacts: dict[str, str]) -> None:
    """Inside the caller's transaction: merge ``artifacts`` into the version's."""
    row = conn.execute("SELECT artifacts FROM versions WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise WorkspaceError(f"no version {name} to attach artifacts to")
    merged = {**json.loads(row[0] or "{}"), **artifacts}
    conn.execute(
        "UPDATE versions SET artifacts = ?, updated_at = ? WHERE name = ?",
        (json.dumps(merged), now_iso(), name),
    )


def promote(conn: sqlite3.Connection, name: str) -> str | None:
    """Make ``name`` current; the previous current becomes retired. Returns the previous."""
    with transaction(conn):
        return make_current(conn, name)


def make_current(conn: sqlite3.Connection, name: str) -> str | None:
    """:func:`promote` inside the caller's transaction: pointer and statuses move together.

    Idempotent: promoting the current version again changes nothing. Every other
    version marked current (there should be none) is retired, so after it exactly
    one version is current and the pointer names it.
    """
    if conn.execute("SELECT 1 FROM versions WHERE name = ?", (name,)).fetchone() is None:
        raise WorkspaceError(f"no version {name} to promote")
    previous = current_version(conn)
    stamp = now_iso()
    conn.execute(
        "UPDATE versions SET status = 'retired', updated_at = ? "
        "WHERE status = 'current' AND name != ?",
        (stamp, name),
    )
    conn.execute(
        "UPDATE versions SET status = 'current', updated_at = ? WHERE name = ?", (stamp, name)
    )
    conn.execute(
        "INSERT INTO current_version VALUES (1, ?) ON CONFLICT(singleton) DO UPDATE "
        "SET name = excluded.name",
        (name,),
    )
    return previous if previous != name else None


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
