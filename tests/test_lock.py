"""The workspace lock: one holder at a time, named in the refusal; a dead holder's lock is taken."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mlx_rsi.lock import LockHeldError, WorkspaceLock, lock_holder

HOLDER = """
import sys, time
from mlx_rsi.lock import WorkspaceLock
lock = WorkspaceLock(sys.argv[1], "train --max-steps 5")
lock.acquire()
print("held", flush=True)
time.sleep(60)
"""


def _start_holder(root: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(root)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_second_holder_is_refused_with_pid_and_command(tmp_path: Path) -> None:
    proc = _start_holder(tmp_path)
    try:
        with pytest.raises(LockHeldError) as info:
            WorkspaceLock(tmp_path, "ingest").acquire()
        assert f"PID {proc.pid}" in info.value.one_line()
        assert "train --max-steps 5" in info.value.one_line()
        holder = lock_holder(tmp_path)
        assert holder is not None and holder.pid == proc.pid
    finally:
        proc.kill()
        proc.wait()


def test_lock_of_a_killed_process_is_taken_over_with_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    proc = _start_holder(tmp_path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert lock_holder(tmp_path) is None  # the kernel released it with the process
    with (
        caplog.at_level(logging.WARNING, logger="mlx_rsi.lock"),
        WorkspaceLock(tmp_path, "train") as lock,
    ):
        assert lock.held
        holder = lock_holder(tmp_path)
        assert holder is not None and holder.pid == os.getpid()
    assert any(str(proc.pid) in r.getMessage() for r in caplog.records)


def test_release_frees_the_lock_and_names_are_independent(tmp_path: Path) -> None:
    with WorkspaceLock(tmp_path, "watch", name="daemon"), WorkspaceLock(tmp_path, "train"):
        assert lock_holder(tmp_path, "daemon") is not None
        assert lock_holder(tmp_path) is not None
    assert lock_holder(tmp_path) is None
    assert lock_holder(tmp_path, "daemon") is None
    with WorkspaceLock(tmp_path, "train") as again:  # re-acquirable after release
        assert again.held
