"""A full disk: one line saying so and where, and the same cycle finishes once space is freed.

The workspace lives on a size-limited tmpfs mounted for the test (root only; skipped
otherwise, with the reason). The disk is filled with a real file at the moment a
stage starts, so the failure is the real one: SQLite's "database or disk is full" at
ingest, ``OSError(ENOSPC)`` in the dataset writer, torch's and safetensors' own write
errors at the checkpoint and the fused model. Nothing is faked but the timing.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sqlite3
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Cli
from tiny_cycle import EXAMPLES, cycle_workspace
from tmpfs import mounted_tmpfs

FILLER = "filler.bin"


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A 48 MiB tmpfs of its own (a full workspace disk that leaves the rest alone)."""
    with mounted_tmpfs(tmp_path / f"disk-{uuid.uuid4().hex[:6]}", "48m") as mount:
        yield mount


def fill(mount: Path) -> None:
    """Take every free byte of ``mount`` with a real file."""
    with (mount / FILLER).open("ab", buffering=0) as handle:
        for size in (1 << 20, 1 << 12, 1):
            block = b"\0" * size
            with contextlib.suppress(OSError):
                while True:
                    handle.write(block)
    assert shutil.disk_usage(mount).free < 4096


def free(mount: Path) -> None:
    (mount / FILLER).unlink(missing_ok=True)


def _workspace(mount: Path, model: Path) -> Cli:
    cli = Cli(mount / "ws")
    cycle_workspace(cli, model)
    return cli


def _assert_disk_full_line(code: int, err: str, mount: Path) -> None:
    """Exit 1 and one error line (training may have logged warnings before it)."""
    assert code == 1, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and err.endswith(errors[0] + "\n"), err
    assert errors[0].startswith("error: the disk is full"), err
    assert str(mount) in errors[0]  # says where
    assert "Traceback" not in err and "restore it" not in err


def _fill_before(monkeypatch: pytest.MonkeyPatch, mount: Path, owner: Any, name: str) -> None:
    """Fill the disk when ``owner.name`` is first called, then let the real call run."""
    real: Callable[..., Any] = getattr(owner, name)
    calls = []

    def filled(*args: Any, **kwargs: Any) -> Any:
        if not calls:
            calls.append(1)
            fill(mount)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, filled)


def _stage_hook(stage: str) -> tuple[Any, str]:
    if stage == "ingest":
        import mlx_rsi.ingest

        return mlx_rsi.ingest, "ingest"
    if stage == "dataset":
        import mlx_rsi.dataset

        return mlx_rsi.dataset, "split_examples"
    if stage == "checkpoint":
        import backends.peft_checkpoint

        return backends.peft_checkpoint, "save_checkpoint"
    from backends.peft_lora import PeftBackend

    return PeftBackend, "fuse"


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["ingest", "dataset", "checkpoint", "fuse"])
def test_full_disk_during_train_then_the_same_cycle_finishes(
    disk: Path, tiny_llama_dir: Path, monkeypatch: pytest.MonkeyPatch, stage: str
) -> None:
    cli = _workspace(disk, tiny_llama_dir)
    hook = _stage_hook(stage)
    with monkeypatch.context() as patch:
        _fill_before(patch, disk, *hook)
        code, _, err = cli.main("train")
    _assert_disk_full_line(code, err, disk)
    free(disk)
    code, out, err = cli.main("train")
    assert code == 0, (out, err)
    assert "cycle v1.1: promoted" in out
    ws = cli.workspace
    with sqlite3.connect(ws / "state.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT name FROM current_version").fetchone()[0] == "v1.1"
        assert [r[0] for r in conn.execute("SELECT name FROM datasets")] == ["v1.1"]
    assert (ws / "models" / "v1.1" / "hf" / "config.json").is_file()
    leftovers = [p for p in ws.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


@pytest.mark.parametrize("command", [["ingest"], ["train"], ["curate"]])
def test_commands_on_a_full_disk_say_so(disk: Path, command: list[str]) -> None:
    cli = Cli(disk / "ws")
    assert cli("init", "--no-standard-sources").exit_code == 0
    shutil.copytree(EXAMPLES, cli.workspace / "sessions", dirs_exist_ok=True)
    fill(disk)
    code, _, err = cli.main(*command)
    _assert_disk_full_line(code, err, disk)
    free(disk)
    code, _, err = cli.main("ingest")
    assert code == 0, err


def test_full_disk_at_dataset_build_command(disk: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`dataset build` alone: ENOSPC in the writer, nothing half-written, then it works."""
    from mlx_rsi.curate import store_examples
    from mlx_rsi.records import Example
    from mlx_rsi.workspace import Workspace

    cli = Cli(disk / "ws")
    ws = Workspace(cli.workspace)
    ws.create()
    examples = [
        Example(
            messages=[
                {"role": "user", "content": f"request {i} " + "x" * 2000},
                {"role": "assistant", "content": f"answer {i}"},
            ],
            session_id=f"s{i % 4}",
            score=1.0,
        )
        for i in range(40)
    ]
    with ws.store() as conn:
        store_examples(conn, examples)
    import mlx_rsi.dataset

    with monkeypatch.context() as patch:
        _fill_before(patch, disk, mlx_rsi.dataset, "split_examples")
        code, _, err = cli.main("dataset", "build")
    _assert_disk_full_line(code, err, disk)
    assert list(ws.datasets_dir.iterdir()) == []
    free(disk)
    code, out, err = cli.main("dataset", "build")
    assert code == 0 and out.startswith("dataset v1.1"), err


def test_read_only_workspace_is_not_called_invalid(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A store that cannot be written says so, and points at the permissions, not a restore."""
    if os.geteuid() == 0:
        pytest.skip("root writes through permission bits; the tmpfs test covers root")
    assert cli("init", "--no-standard-sources").exit_code == 0
    os.chmod(cli.workspace, 0o555)
    try:
        code, _, err = cli.main("ingest")
    finally:
        os.chmod(cli.workspace, 0o755)
    assert code == 1 and "restore it" not in err and err.count("\n") == 1


def test_read_only_mount_is_one_line(disk: Path) -> None:
    cli = Cli(disk / "ws")
    assert cli("init", "--no-standard-sources").exit_code == 0
    done = subprocess.run(["mount", "-o", "remount,ro", str(disk)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot remount read-only: {done.stderr.strip()}")
    try:
        code, _, err = cli.main("ingest")
        status_code, _, status_err = cli.main("status")
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(disk)], check=False)
    assert code == 1 and err.count("\n") == 1, err
    assert "read-only" in err.lower() and "restore it" not in err
    # SQLite cannot open a WAL store on a read-only mount: readers say why, in one line.
    assert status_code == 1 and "read-only" in status_err and "restore it" not in status_err


def test_storage_error_reads_the_os_text_of_wrappers() -> None:
    from mlx_rsi.errors import DiskFullError, NotWritableError, storage_error

    wrapped = RuntimeError("Error while serializing: IoError(Os { code: 28, kind: StorageFull })")
    assert isinstance(storage_error(wrapped, "/w"), DiskFullError)
    try:
        try:
            raise OSError(errno.EROFS, "Read-only file system", "/w/x")
        except OSError as inner:
            raise RuntimeError("save failed") from inner
    except RuntimeError as outer:
        mapped = storage_error(outer)
    assert isinstance(mapped, NotWritableError) and "/w/x" in mapped.one_line()
    assert storage_error(ValueError("bad value")) is None
