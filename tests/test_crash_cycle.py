"""kill -9 `mlx-rsi train` at every stage boundary and mid-stage, rerun: one clean run's state.

Each `train` runs in a subprocess with ``MLX_RSI_TEST_KILL_AT=<stage>:<when>``
(mlx_rsi/crashpoint.py): the process SIGKILLs itself at that point, as a
``kill -9`` would, with no clean-up. The next `train` must finish the same cycle
from where it stopped. A chain kills one workspace at several points in turn (each
rerun resumes and is killed further on), then a last run finishes; the final state
is compared with an uninterrupted run's: one current version, no version left
``training``, no duplicate example, the same dataset files, no temporary folder,
no row left running, and `status` reporting nothing interrupted.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from tiny_cycle import cycle_config

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "sessions"
MAX_STEPS = 4

pytestmark = pytest.mark.slow

# Stage boundaries and mid-stage points, in the order a cycle passes them. Chains
# are split so that each point is also reached from a different earlier crash.
CHAINS = {
    "data-and-training": [
        "curate:end",  # examples stored, no dataset yet (curate is redone)
        "dataset:end",  # dataset built and registered, stage not recorded
        "train:step",  # mid-training before any checkpoint: a new run replaces it
        "train:save",  # mid-training after a checkpoint: the run resumes
        "train:trained",  # adapter written, run not marked done
        "train:end",  # run done, stage not recorded
    ],
    "evaluation-and-promotion": [
        "train:done",  # boundary: trained, evaluation not started
        "evaluate:start",
        "evaluate:end",  # report written, version not updated
        "fuse:staged",  # fused model in its temporary folder
        "fuse:end",  # fused, not recorded
        "promote:end",  # evaluated and fused, pointer not moved
        "promote:done",  # promoted, export not started
        "export:end",  # exported, not recorded
    ],
}
LEFTOVER = re.compile(r"^\..+\.(tmp|old)$")


def config(model: Path) -> str:
    """The shared tiny-cycle config (tests/tiny_cycle.py), made quicker to evaluate."""
    raw = yaml.safe_load(cycle_config(model, max_steps=MAX_STEPS))
    raw["train"].update(save_steps=2, logging_steps=1, cutoff_len=128)
    raw["eval"].update(
        max_new_tokens=2,
        test_cases=[],
        builtin_guards=False,
        loss_tolerance=100.0,
        bootstrap_resamples=100,
    )
    return str(yaml.safe_dump(raw))


def make_workspace(root: Path, model: Path) -> Path:
    root.mkdir(parents=True)
    (root / "mlx-rsi.yaml").write_text(config(model))
    return root


def train(ws: Path, corpus: Path, kill_at: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
    env.pop("MLX_RSI_TEST_KILL_AT", None)
    if kill_at:
        env["MLX_RSI_TEST_KILL_AT"] = kill_at
    argv = [sys.executable, "-m", "mlx_rsi", "--workspace", str(ws), "train", str(corpus)]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300, check=False)


def final_state(ws: Path) -> dict[str, Any]:
    """What must equal between a crashed-and-finished cycle and an uninterrupted one."""
    with sqlite3.connect(ws / "state.db") as conn:
        query = conn.execute
        state = {
            "current": query("SELECT name FROM current_version").fetchall(),
            "versions": query("SELECT name, status FROM versions ORDER BY name").fetchall(),
            "examples": sorted(r[0] for r in query("SELECT content_hash FROM examples")),
            "datasets": query("SELECT name FROM datasets").fetchall(),
            "done_runs": query("SELECT dataset, step FROM runs WHERE status = 'done'").fetchall(),
            "cycles": query("SELECT version, status FROM cycles").fetchall(),
            "stages": [r[0] for r in query("SELECT stage FROM cycle_stages ORDER BY rowid")],
            "running_events": query(
                "SELECT COUNT(*) FROM events WHERE status = 'running'"
            ).fetchone()[0],
            "unfinished_runs": query(
                "SELECT COUNT(*) FROM runs WHERE status IN ('running', 'interrupted')"
            ).fetchone()[0],
        }
    dataset = ws / "datasets" / "v1.1"
    state["dataset_files"] = {p.name: p.read_bytes() for p in sorted(dataset.glob("*.jsonl"))}
    state["fused"] = (ws / "models" / "v1.1" / "hf" / "config.json").is_file()
    state["leftovers"] = [str(p) for p in ws.rglob("*") if LEFTOVER.match(p.name)]
    return state


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Session logs outside the workspaces: the same session ids in every workspace."""
    root = tmp_path_factory.mktemp("corpus") / "sessions"
    shutil.copytree(EXAMPLES, root)
    return root


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory, tiny_llama_dir: Path, corpus: Path):
    ws = make_workspace(tmp_path_factory.mktemp("clean") / "ws", tiny_llama_dir)
    done = train(ws, corpus)
    assert done.returncode == 0, done.stderr
    state = final_state(ws)
    assert state["current"] == [("v1.1",)], "the reference cycle must promote"
    return state


@pytest.mark.parametrize("chain", sorted(CHAINS))
def test_killed_cycle_finishes_like_an_uninterrupted_one(
    chain: str, clean: dict[str, Any], tmp_path: Path, tiny_llama_dir: Path, corpus: Path
) -> None:
    ws = make_workspace(tmp_path / "ws", tiny_llama_dir)
    for point in CHAINS[chain]:
        killed = train(ws, corpus, kill_at=point)
        assert killed.returncode == -signal.SIGKILL, (point, killed.stdout, killed.stderr)
        assert_never_two_current(ws)
        CHECKS.get(point, lambda ws: None)(ws)
    done = train(ws, corpus)
    assert done.returncode == 0, done.stderr
    assert "resume: unfinished cycle v1.1" in done.stdout
    state = final_state(ws)
    assert state == clean
    assert state["leftovers"] == [] and state["running_events"] == 0
    assert state["versions"] == [("v1.1", "current")]
    assert state["done_runs"] == [("v1.1", MAX_STEPS)]
    status = status_json(ws)
    assert status["interrupted_runs"] == [] and status["unfinished_cycle"] is None


def query(ws: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(ws / "state.db") as conn:
        return conn.execute(sql).fetchall()


def killed_mid_training(ws: Path) -> None:
    assert query(ws, "SELECT status FROM runs WHERE status != 'abandoned'") == [("running",)]
    assert query(ws, "SELECT status FROM versions") == [("training",)]


def killed_after_checkpoint(ws: Path) -> None:
    """The runs row followed training: it says the step of the checkpoint."""
    killed_mid_training(ws)
    assert query(ws, "SELECT step FROM runs WHERE status = 'running'") == [(2,)]


def killed_mid_fuse(ws: Path) -> None:
    """The kill left a staging folder (removed by the rerun) and no fused model."""
    folder = ws / "models" / "v1.1"
    assert list(folder.glob(".hf.*.tmp")) and not (folder / "hf").exists()


def killed_before_pointer_moved(ws: Path) -> None:
    """Between 'evaluated' and 'promoted': a candidate, nothing current yet."""
    assert query(ws, "SELECT name, status FROM versions") == [("v1.1", "candidate")]
    assert query(ws, "SELECT name FROM current_version") == []


def killed_after_promotion(ws: Path) -> None:
    assert query(ws, "SELECT name, status FROM versions") == [("v1.1", "current")]
    assert query(ws, "SELECT status FROM cycles") == [("running",)]


CHECKS = {
    "train:step": killed_mid_training,
    "train:save": killed_after_checkpoint,
    "fuse:staged": killed_mid_fuse,
    "promote:end": killed_before_pointer_moved,
    "promote:done": killed_after_promotion,
}


def assert_never_two_current(ws: Path) -> None:
    with sqlite3.connect(ws / "state.db") as conn:
        current = conn.execute("SELECT name FROM versions WHERE status = 'current'").fetchall()
        pointer = conn.execute("SELECT name FROM current_version").fetchall()
    assert len(current) <= 1 and current == pointer


def status_json(ws: Path) -> dict[str, Any]:
    argv = [sys.executable, "-m", "mlx_rsi", "--workspace", str(ws), "status", "--json"]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=120)
    data: dict[str, Any] = json.loads(out.stdout)
    return data
