"""kill -9 in the middle of an ingest, then a rerun: the same state as one clean run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from test_sources_common import CLAUDE, CODEX, snapshot

from mlx_rsi.config import Config
from mlx_rsi.ingest import ingest
from mlx_rsi.workspace import Workspace

RUNNER = """
import sys
from pathlib import Path
import mlx_rsi.ingest
from mlx_rsi.config import Config
from mlx_rsi.ingest import ingest
from mlx_rsi.workspace import Workspace

mlx_rsi.ingest.BATCH_FILES = 4  # commit often, so that the kill lands between commits

def progress(done, total, path):
    print(done, flush=True)

ingest(Workspace(Path(sys.argv[1])), Config(), [Path(sys.argv[2])], on_progress=progress)
print("finished", flush=True)
"""


def make_corpus(root: Path, count: int) -> None:
    claude, codex = CLAUDE.read_bytes(), CODEX.read_bytes()
    for index in range(count):
        project = root / f"-home-u-p{index % 7}"
        project.mkdir(parents=True, exist_ok=True)
        # distinct content per file: each file's prompts carry its number
        text = claude.replace(b"fix it", b"fix it #%d" % index)
        (project / f"{index:04d}-session.jsonl").write_bytes(text)
        if index % 5 == 0:
            (project / f"rollout-{index:04d}.jsonl").write_bytes(
                codex.replace(b"CLI", b"CLI%d" % index)
            )


def run_until_killed(ws: Path, corpus: Path, after: int) -> bool:
    """Start an ingest in a subprocess and SIGKILL it after ``after`` files; True if killed."""
    process = subprocess.Popen(
        [sys.executable, "-c", RUNNER, str(ws), str(corpus)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)},
    )
    assert process.stdout is not None
    for line in process.stdout:
        if line.strip() == "finished":
            break
        if int(line) >= after:
            os.kill(process.pid, signal.SIGKILL)
            break
    process.wait(timeout=60)
    return process.returncode == -signal.SIGKILL


@pytest.mark.slow
def test_kill_minus_9_then_rerun_equals_one_clean_run(tmp_path):
    corpus = tmp_path / "corpus"
    make_corpus(corpus, 60)
    crashed = Workspace(tmp_path / "crashed")
    crashed.create()
    assert run_until_killed(crashed.root, corpus, after=15)
    assert run_until_killed(crashed.root, corpus, after=20)  # unchanged files skipped, then more
    with crashed.store() as conn:
        recorded = {r[0] for r in conn.execute("SELECT path FROM files")}
        stored_from = {r[0] for r in conn.execute("SELECT DISTINCT file_path FROM messages")}
    assert 12 <= len(recorded) < 72
    assert stored_from <= recorded  # no file's messages without its files row (and vice versa)
    result = ingest(crashed, Config(), [corpus])
    assert result.files_unchanged == len(recorded)

    clean = Workspace(tmp_path / "clean")
    clean.create()
    ingest(clean, Config(), [corpus])
    assert snapshot(crashed) == snapshot(clean)
    with crashed.store() as a, clean.store() as b:
        query = "SELECT path, format, size, offset, carry, status FROM files ORDER BY path"
        assert a.execute(query).fetchall() == b.execute(query).fetchall()
