"""The workspace lock at the CLI: writers exclude each other, readers never wait."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tiny_cycle import cycle_workspace

from mlx_rsi.lock import WorkspaceLock, lock_holder

REPO = Path(__file__).resolve().parents[1]
WRITERS = [
    ["ingest"],
    ["curate"],
    ["dataset", "build"],
    ["train"],
    ["init", "--no-standard-sources"],
]
READERS = [
    ["status"],
    ["sessions", "list"],
    ["dataset", "list"],
    ["doctor"],
    ["ingest", "--dry-run"],
]


@pytest.fixture
def held(cli):  # type: ignore[no-untyped-def]
    assert cli("init", "--no-standard-sources").exit_code == 0
    with WorkspaceLock(cli.workspace, "mlx-rsi train") as lock:
        yield lock


@pytest.mark.parametrize("command", WRITERS, ids=" ".join)
def test_a_writer_is_refused_with_one_line_naming_the_holder(cli, held, command) -> None:  # type: ignore[no-untyped-def]
    code, _, err = cli.main(*command)
    assert code == 1
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"PID {os.getpid()} (mlx-rsi train" in err


@pytest.mark.parametrize("command", READERS, ids=" ".join)
def test_readers_run_while_the_lock_is_held(cli, held, command) -> None:  # type: ignore[no-untyped-def]
    code, _, err = cli.main(*command)
    assert code == 0, err


def test_export_outside_the_workspace_is_a_reader(cli, held, tmp_path) -> None:  # type: ignore[no-untyped-def]
    code, _, err = cli.main(
        "dataset", "export", "v1.1", "--format", "mlx", "--out", str(tmp_path / "out")
    )
    assert "busy" not in err  # it fails for want of a dataset, not for the lock
    code, _, err = cli.main(
        "dataset", "export", "v1.1", "--format", "mlx", "--out", str(cli.workspace / "out")
    )
    assert code == 1 and "busy" in err


def test_lock_is_released_after_a_command(cli) -> None:  # type: ignore[no-untyped-def]
    assert cli.main("init", "--no-standard-sources")[0] == 0
    assert lock_holder(cli.workspace) is None
    assert cli.main("ingest")[0] == 0
    assert lock_holder(cli.workspace) is None


def _run(ws: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlx_rsi", "--workspace", str(ws), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def test_two_concurrent_trains(cli, tiny_llama_dir) -> None:  # type: ignore[no-untyped-def]
    """The second `train` exits with one line naming the first; the first completes."""
    ws = cycle_workspace(cli, tiny_llama_dir)
    first = subprocess.Popen(
        [sys.executable, "-m", "mlx_rsi", "--workspace", str(ws), "train"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 120
        while (holder := lock_holder(ws)) is None or holder.pid != first.pid:
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "the first train never took the lock"
            time.sleep(0.05)
        second = _run(ws, "train")
        reader = _run(ws, "status")
        out, err = first.communicate(timeout=600)
    finally:
        if first.poll() is None:
            first.kill()
    assert second.returncode == 1, second
    assert second.stderr.count("\n") == 1 and "Traceback" not in second.stderr
    assert f"PID {first.pid} (mlx-rsi train" in second.stderr
    assert reader.returncode == 0, reader.stderr
    assert first.returncode == 0, (out, err)
    assert "cycle v1.1: promoted" in out
    with sqlite3.connect(ws / "state.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 1
        assert conn.execute("SELECT name FROM current_version").fetchone()[0] == "v1.1"
