"""train.min_steps and train.auto's choice by validation loss (a scripted backend: the
choice and the budget are under test here, not training; real training is in test_eval)."""

from __future__ import annotations

import json
from pathlib import Path

from backends.base import TrainEvent, TrainResult, TrainSpec
from mlx_rsi import autotune
from mlx_rsi.config import TrainConfig


class ScriptedBackend:
    name = "scripted"

    def __init__(self, val_losses: dict[float, float]) -> None:
        self.val_losses = val_losses
        self.calls: list[tuple[float, Path]] = []

    def train(self, spec: TrainSpec, dataset_dir: Path, out_dir: Path, on_event) -> TrainResult:  # type: ignore[no-untyped-def]
        self.calls.append((spec.learning_rate, out_dir))
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "metrics.jsonl").write_text(
            json.dumps({"step": 1, "loss": spec.learning_rate}) + "\n"
        )
        on_event(TrainEvent("end"))
        return TrainResult(
            out_dir / "adapter", 10, 1.0, self.val_losses[spec.learning_rate], 100, 1.0
        )


def test_auto_keeps_the_lowest_validation_loss(tmp_path: Path) -> None:
    spec = TrainSpec(model_dir=tmp_path, learning_rate=2e-4)
    backend = ScriptedBackend({2e-4: 1.5, 1e-4: 1.2, 4e-4: 1.9})
    result = autotune.train(
        backend, spec, TrainConfig(), tmp_path, tmp_path / "run", lambda e: None
    )
    assert [lr for lr, _ in backend.calls] == [2e-4, 1e-4, 4e-4]
    assert backend.calls[0][1] == tmp_path / "run"  # the configured trial is the run itself
    assert result.best_val_loss == 1.2
    record = json.loads((tmp_path / "run" / "auto.json").read_text())
    assert [t["chosen"] for t in record["trials"]] == [False, True, False]
    assert json.loads((tmp_path / "run" / "metrics.jsonl").read_text())["loss"] == 1e-4


def test_auto_off_with_explicit_steps_or_a_budget_of_zero(tmp_path: Path) -> None:
    spec = TrainSpec(model_dir=tmp_path, learning_rate=2e-4, max_steps=5)
    backend = ScriptedBackend({2e-4: 1.5, 1e-4: 1.0, 4e-4: 1.0})
    autotune.train(
        backend, spec, TrainConfig(max_steps=5), tmp_path, tmp_path / "a", lambda e: None
    )
    assert len(backend.calls) == 1
    backend.calls.clear()
    spec = TrainSpec(model_dir=tmp_path, learning_rate=2e-4)
    cfg = TrainConfig(auto_budget_minutes=0.0)
    result = autotune.train(backend, spec, cfg, tmp_path, tmp_path / "b", lambda e: None)
    assert len(backend.calls) == 1 and result.best_val_loss == 1.5


def test_min_steps_scales_with_dataset_size(tmp_path: Path) -> None:
    spec = TrainSpec(model_dir=tmp_path, batch_size=2, grad_accum=4, epochs=3.0)
    cfg = TrainConfig(min_steps=40, max_epochs=10.0)
    assert autotune.with_min_steps(spec, cfg, 400).max_steps is None  # 150 steps already
    assert autotune.with_min_steps(spec, cfg, 100).max_steps == 40  # 39 steps -> 40
    assert autotune.with_min_steps(spec, cfg, 20).max_steps == 30  # 3/epoch, at most 10 epochs
    explicit = TrainSpec(model_dir=tmp_path, max_steps=7)
    assert autotune.with_min_steps(explicit, cfg, 20).max_steps == 7
