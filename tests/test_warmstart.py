"""Warm starts: the next cycle continues from the current version's adapter."""

from __future__ import annotations

import json
import math
import shutil
import sqlite3
from pathlib import Path

import pytest
import yaml
from tiny_cycle import cycle_workspace

from backends.base import TrainSpec
from mlx_rsi.errors import ModelError


def _lines(path: Path) -> list[bytes]:
    return [line for line in path.read_bytes().splitlines() if line.strip()]


def warm_workspace(cli, model: Path, **settings) -> Path:
    """The tiny-cycle workspace with warm starts on (they are off by default)."""
    ws = cycle_workspace(cli, model, **settings)
    config = yaml.safe_load((ws / "mlx-rsi.yaml").read_text())
    config["train"]["warm_start"] = True
    (ws / "mlx-rsi.yaml").write_text(yaml.safe_dump(config))
    return ws


def _run_dir(ws: Path, version: str) -> Path:
    (run,) = ws.glob(f"runs/{version}-*")
    return run


@pytest.mark.parametrize("backend", ["peft", "mlx"])
def test_second_cycle_trains_new_examples_plus_a_replay_from_the_current_adapter(
    cli, tiny_llama_dir, backend
):
    ws = warm_workspace(cli, tiny_llama_dir, backend=backend, max_steps=6)
    later = sorted(p.name for p in (ws / "sessions").iterdir())[-2:]
    for name in later:  # these arrive only before the second cycle
        shutil.move(ws / "sessions" / name, ws / name)
    first = cli("train")
    assert first.exit_code == 0, first.output
    assert "cycle v1.1: promoted" in first.output
    assert "warm start" not in first.output  # nothing to continue from
    for name in later:
        shutil.move(ws / name, ws / "sessions" / name)
    estimate = cli("train", "--estimate")
    assert estimate.exit_code == 0, estimate.output
    assert "warm start from v1.1:" in estimate.output  # it measures what the cycle will train

    second = cli("train")
    assert second.exit_code == 0, second.output
    assert "warm start from v1.1:" in second.output
    warm = _run_dir(ws, "v1.2") / "warm"
    record = json.loads((warm / "warm.json").read_text())
    assert record["parent"] == "v1.1"
    assert Path(record["adapter"]) == _run_dir(ws, "v1.1") / "adapter"
    parent_train = set(_lines(ws / "datasets" / "v1.1" / "train.jsonl"))
    trained = _lines(warm / "train.jsonl")
    new = [line for line in trained if line not in parent_train]
    assert len(new) == record["new"] > 0
    assert len(trained) - len(new) == record["replayed"] == math.ceil(0.5 * record["new"])
    # Every new example of the dataset is trained on; replayed ones come from the parent.
    dataset_train = _lines(ws / "datasets" / "v1.2" / "train.jsonl")
    assert {line for line in dataset_train if line not in parent_train} == set(new)
    with sqlite3.connect(ws / "state.db") as conn:
        (spec,) = conn.execute("SELECT spec FROM runs WHERE id LIKE 'v1.2-%'").fetchone()
    assert json.loads(spec)["init_adapter"] == record["adapter"]  # what the backend loads
    assert (warm / "valid.jsonl").read_bytes() == (
        ws / "datasets" / "v1.2" / "valid.jsonl"
    ).read_bytes()


def test_other_adapter_settings_train_from_scratch_and_say_why(cli, tiny_llama_dir):
    ws = warm_workspace(cli, tiny_llama_dir, max_steps=4)
    shutil.move(ws / "sessions" / "security-review", ws / "security-review")
    assert cli("train").exit_code == 0
    shutil.move(ws / "security-review", ws / "sessions" / "security-review")
    config = yaml.safe_load((ws / "mlx-rsi.yaml").read_text())
    config["train"]["lora_rank"] = 4
    (ws / "mlx-rsi.yaml").write_text(yaml.safe_dump(config))
    result = cli("--verbose", "train")
    assert result.exit_code == 0, result.output
    assert "warm start from" not in result.output
    assert "not from v1.1 (other adapter settings: rank)" in result.output
    assert not (_run_dir(ws, "v1.2") / "warm").exists()


def test_warm_start_is_off_by_default(cli, tiny_llama_dir):
    ws = cycle_workspace(cli, tiny_llama_dir, max_steps=4)
    shutil.move(ws / "sessions" / "security-review", ws / "security-review")
    assert cli("train").exit_code == 0
    shutil.move(ws / "security-review", ws / "sessions" / "security-review")
    result = cli("train")
    assert result.exit_code == 0, result.output
    assert "warm start" not in result.output
    assert not (_run_dir(ws, "v1.2") / "warm").exists()


def _lora_model(model_dir: Path, rank: int):
    from backends import torch_model

    plan = torch_model.resolve_precision("fp32")
    spec = TrainSpec(model_dir=model_dir, rank=rank, dropout=0.0)
    return torch_model.add_lora(torch_model.load_model(model_dir, plan), spec)


def test_peft_warm_start_loads_every_lora_tensor_and_refuses_other_shapes(tiny_llama_dir, tmp_path):
    import torch
    from peft import get_peft_model_state_dict

    from backends import torch_model

    parent = _lora_model(tiny_llama_dir, rank=4)
    with torch.no_grad():
        for name, tensor in parent.named_parameters():
            if "lora_" in name:
                tensor.uniform_(-1, 1)
    parent.save_pretrained(tmp_path / "adapter")

    child = _lora_model(tiny_llama_dir, rank=4)
    torch_model.load_adapter_weights(child, tmp_path / "adapter")
    want, got = get_peft_model_state_dict(parent), get_peft_model_state_dict(child)
    assert want.keys() == got.keys() and len(want) > 0
    assert all(torch.equal(want[k], got[k]) for k in want)

    with pytest.raises(ModelError, match="does not fit this run's LoRA settings"):
        torch_model.load_adapter_weights(_lora_model(tiny_llama_dir, rank=8), tmp_path / "adapter")
    with pytest.raises(ModelError, match=r"adapter_model\.safetensors missing"):
        torch_model.load_adapter_weights(child, tmp_path)
