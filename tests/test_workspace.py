"""State store: WAL, schema version, migrations applied once and in order."""

from __future__ import annotations

import sqlite3

import pytest

from mlx_rsi import workspace
from mlx_rsi.errors import WorkspaceError
from mlx_rsi.workspace import Workspace, open_store, resolve_workspace, schema_version


def test_store_is_wal_with_schema_version(tmp_path):
    ws = Workspace(tmp_path / "w")
    ws.create()
    conn = ws.store()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert schema_version(conn) == len(workspace.MIGRATIONS)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"files", "sessions", "messages", "examples", "datasets", "runs", "versions"} <= tables


def test_migrations_apply_once(tmp_path, monkeypatch):
    path = tmp_path / "state.db"
    open_store(path).close()
    extra = ("9999_test_extra", "CREATE TABLE extra (x INTEGER)")
    monkeypatch.setattr(workspace, "MIGRATIONS", [*workspace.MIGRATIONS, extra])
    conn = open_store(path)
    conn.execute("INSERT INTO extra VALUES (1)")
    conn.close()
    conn = open_store(path)  # reopening must not re-run (would fail: table exists)
    assert conn.execute("SELECT COUNT(*) FROM extra").fetchone()[0] == 1
    assert schema_version(conn) == len(workspace.MIGRATIONS)


def test_newer_store_is_refused(tmp_path):
    path = tmp_path / "state.db"
    open_store(path).close()
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO schema_migrations VALUES ('9999_future', 'x')")
    conn.commit()
    conn.close()
    with pytest.raises(WorkspaceError, match="newer mlx-rsi"):
        open_store(path)


def test_not_a_database(tmp_path):
    path = tmp_path / "state.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(WorkspaceError, match="cannot open the state store"):
        open_store(path)


def test_resolution_order(tmp_path, monkeypatch):
    monkeypatch.setenv("MLX_RSI_HOME", str(tmp_path / "env"))
    assert resolve_workspace(None).root == tmp_path / "env"
    assert resolve_workspace(tmp_path / "flag").root == tmp_path / "flag"
    monkeypatch.delenv("MLX_RSI_HOME")
    monkeypatch.chdir(tmp_path)
    assert resolve_workspace(None).root == tmp_path / "rsi-workspace"
