"""A workspace's paths and its SQLite state store (WAL, named migrations).

Layout (DESIGN.md "Workspace")::

    mlx-rsi.yaml  state.db  sessions/<name>/interactions.jsonl
    datasets/vX.Y/  runs/<id>/  models/vX.Y/  reports/  logs/  watch.lock

The state store records every stage, so any stage can be rerun or resumed. Each
migration has a unique name; those applied are listed in ``schema_migrations`` and
``schema_version`` holds their count, so new tables never renumber old ones.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from mlx_rsi.errors import MlxRsiError, NotWritableError, WorkspaceError, storage_error

ENV_HOME = "MLX_RSI_HOME"
DEFAULT_DIRNAME = "rsi-workspace"
CONFIG_NAME = "mlx-rsi.yaml"


@dataclass(frozen=True)
class Workspace:
    root: Path

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_NAME

    @property
    def db_path(self) -> Path:
        return self.root / "state.db"

    @property
    def sessions_dir(self) -> Path:
        return self.root / "sessions"

    @property
    def datasets_dir(self) -> Path:
        return self.root / "datasets"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def lock_path(self) -> Path:
        return self.root / "watch.lock"

    def exists(self) -> bool:
        return self.db_path.exists()

    def create(self) -> None:
        """Make the folders and the state store (idempotent)."""
        for folder in (
            self.root,
            self.sessions_dir,
            self.datasets_dir,
            self.runs_dir,
            self.models_dir,
            self.reports_dir,
            self.logs_dir,
        ):
            folder.mkdir(parents=True, exist_ok=True)
        open_store(self.db_path).close()

    def store(self) -> sqlite3.Connection:
        """The state store, which must already exist (``mlx-rsi init`` creates it)."""
        if not self.exists():
            raise WorkspaceError(
                f"no workspace at {self.root}",
                hint="run `mlx-rsi init` or pass --workspace / set MLX_RSI_HOME",
            )
        return open_store(self.db_path)


def resolve_workspace(option: str | Path | None) -> Workspace:
    """--workspace wins, then $MLX_RSI_HOME, then ./rsi-workspace."""
    chosen = option or os.environ.get(ENV_HOME) or DEFAULT_DIRNAME
    return Workspace(Path(chosen).expanduser().resolve())


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


MIGRATIONS: list[tuple[str, str]] = [
    (
        "0001_initial",
        """
        CREATE TABLE files (
            path TEXT PRIMARY KEY,
            format TEXT,
            device INTEGER,
            inode INTEGER,
            size INTEGER NOT NULL DEFAULT 0,
            mtime_ns INTEGER NOT NULL DEFAULT 0,
            head_hash TEXT,
            offset INTEGER NOT NULL DEFAULT 0,
            carry TEXT NOT NULL DEFAULT '{}',
            status TEXT NOT NULL DEFAULT 'ok',
            error TEXT,
            updated_at TEXT
        );
        CREATE TABLE sessions (
            id TEXT PRIMARY KEY,
            source_format TEXT NOT NULL,
            path TEXT NOT NULL,
            native_id TEXT,
            started_at TEXT,
            project TEXT,
            title TEXT,
            parent_id TEXT,
            metadata TEXT NOT NULL DEFAULT '{}',
            n_messages INTEGER NOT NULL DEFAULT 0,
            updated_at TEXT
        );
        CREATE TABLE messages (
            session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
            key TEXT NOT NULL,
            seq INTEGER NOT NULL,
            file_path TEXT,
            data TEXT NOT NULL,
            PRIMARY KEY (session_id, key)
        );
        CREATE INDEX messages_by_seq ON messages(session_id, seq);
        CREATE INDEX messages_by_file ON messages(file_path);
        CREATE TABLE examples (
            id INTEGER PRIMARY KEY,
            content_hash TEXT NOT NULL UNIQUE,
            session_id TEXT NOT NULL,
            origin TEXT NOT NULL DEFAULT 'session',
            category TEXT,
            score REAL,
            data TEXT NOT NULL,
            created_at TEXT
        );
        CREATE TABLE datasets (
            name TEXT PRIMARY KEY,
            path TEXT NOT NULL,
            parent TEXT,
            manifest TEXT NOT NULL,
            created_at TEXT
        );
        CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            backend TEXT NOT NULL,
            dataset TEXT,
            spec TEXT NOT NULL,
            status TEXT NOT NULL,
            step INTEGER NOT NULL DEFAULT 0,
            out_dir TEXT NOT NULL,
            adapter_dir TEXT,
            result TEXT,
            created_at TEXT,
            updated_at TEXT
        );
        CREATE TABLE versions (
            name TEXT PRIMARY KEY,
            parent TEXT,
            dataset TEXT,
            run_id TEXT,
            status TEXT NOT NULL,
            eval TEXT,
            artifacts TEXT NOT NULL DEFAULT '{}',
            created_at TEXT,
            updated_at TEXT
        );
        CREATE TABLE current_version (
            singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
            name TEXT
        );
        CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            cycle_id TEXT,
            stage TEXT NOT NULL,
            status TEXT NOT NULL,
            summary TEXT,
            started_at TEXT,
            finished_at TEXT
        );
        """,
    ),
    (
        "0002_ingest_message_roles",
        """
        ALTER TABLE messages ADD COLUMN role TEXT;
        ALTER TABLE messages ADD COLUMN signals TEXT NOT NULL DEFAULT '';
        CREATE INDEX sessions_by_path ON sessions(path);
        """,
    ),
    (
        # A cycle and the stages it completed, so a crashed cycle is finished by the next
        # run (mlx_rsi/store.py). A version left 'training' by an older mlx-rsi becomes an
        # unfinished cycle whose dataset is done: the next `train` resumes its run.
        "0003_cycles",
        """
        CREATE TABLE cycles (
            id TEXT PRIMARY KEY,
            status TEXT NOT NULL,
            version TEXT,
            dataset TEXT,
            dataset_built INTEGER NOT NULL DEFAULT 0,
            run_id TEXT,
            created_at TEXT,
            updated_at TEXT
        );
        CREATE TABLE cycle_stages (
            cycle_id TEXT NOT NULL REFERENCES cycles(id),
            stage TEXT NOT NULL,
            result TEXT NOT NULL DEFAULT '{}',
            finished_at TEXT,
            PRIMARY KEY (cycle_id, stage)
        );
        CREATE INDEX cycles_by_status ON cycles(status);
        INSERT INTO cycles (id, status, version, dataset, run_id, created_at, updated_at)
            SELECT 'legacy-' || name, 'running', name, dataset, run_id, created_at, updated_at
            FROM versions
            WHERE status = 'training' AND dataset IN (SELECT name FROM datasets);
        INSERT INTO cycle_stages (cycle_id, stage, result, finished_at)
            SELECT c.id, 'dataset', json_object('dataset', c.dataset, 'path', d.path),
                c.created_at
            FROM cycles c JOIN datasets d ON d.name = c.dataset
            WHERE c.id LIKE 'legacy-%';
        """,
    ),
]


def open_store(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) the state store and bring its schema up to date."""
    try:
        conn = sqlite3.connect(path, timeout=30, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        migrate(conn)
    except sqlite3.DatabaseError as e:
        storage = storage_error(e, path) or _unwritable(path, e)
        if storage is not None:  # a full or read-only disk, not a damaged store
            raise storage from e
        raise WorkspaceError(
            f"cannot open the state store {path}: {e}",
            hint="is it a valid mlx-rsi workspace? restore it or point --workspace elsewhere",
        ) from e
    return conn


def _unwritable(path: Path, error: sqlite3.DatabaseError) -> MlxRsiError | None:
    """SQLite says "unable to open" when it cannot create its -wal/-shm files."""
    folder = path.parent
    if "unable to open" in str(error) and folder.is_dir() and not os.access(folder, os.W_OK):
        return NotWritableError(
            f"{folder} is read-only: the state store cannot be opened",
            hint="make the workspace writable, or point --workspace at a writable folder",
        )
    return None


def migrate(conn: sqlite3.Connection) -> int:
    """Apply pending migrations in order; return the schema version (count applied)."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (id TEXT PRIMARY KEY, applied_at TEXT)"
    )
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    applied = {row[0] for row in conn.execute("SELECT id FROM schema_migrations")}
    known = {name for name, _ in MIGRATIONS}
    unknown = applied - known
    if unknown:
        raise WorkspaceError(
            f"the state store was written by a newer mlx-rsi (migrations {sorted(unknown)})",
            hint="upgrade mlx-rsi",
        )
    for name, sql in MIGRATIONS:
        if name in applied:
            continue
        with transaction(conn):
            for statement in _statements(sql):
                conn.execute(statement)
            conn.execute("INSERT INTO schema_migrations VALUES (?, ?)", (name, now_iso()))
    version = len(known)
    if schema_version(conn) == version:  # nothing to write: read-only stores open too
        return version
    with transaction(conn):
        conn.execute("DELETE FROM schema_version")
        conn.execute("INSERT INTO schema_version VALUES (?)", (version,))
    return version


def _statements(sql: str) -> list[str]:
    return [s.strip() for s in sql.split(";") if s.strip()]


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE … COMMIT, rolled back on any exception (incl. Ctrl-C)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def schema_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT version FROM schema_version").fetchone()
    return int(row[0]) if row else 0
