"""train.min_steps and train.auto's choice by validation suite, then loss (a scripted
backend: the choice and the budget are under test here, not training; real training is
in test_eval)."""

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


class AnsweringBackend(ScriptedBackend):
    """Trials answer the validation questions well or badly, by learning rate."""

    def __init__(self, val_losses: dict[float, float], good: float) -> None:
        super().__init__(val_losses)
        self.good = good
        self.asked: list[int] = []

    def generate(self, model_dir, adapter_dir, prompts, **kwargs):  # type: ignore[no-untyped-def]
        self.asked.append(len(prompts))
        lr = next(lr for lr, folder in self.calls if adapter_dir == folder / "adapter")
        answer = "Run `tidepool ship --hold` now." if lr == self.good else "I am not sure."
        return [answer] * len(prompts)


def test_auto_keeps_the_best_on_the_validation_suite_before_loss(tmp_path: Path) -> None:
    def record(request: str, answer: str) -> str:
        messages = [{"role": "user", "content": request}, {"role": "assistant", "content": answer}]
        return json.dumps({"messages": messages}) + "\n"

    data = tmp_path / "data"
    data.mkdir()
    (data / "train.jsonl").write_text(
        record("Freeze the rollout", "`tidepool ship --hold` stops it where it is.")
        + record("Ship a release", "Run `tidepool ship --canary 10`.")
    )
    (data / "valid.jsonl").write_text(record("Pause the bad canary", "Run `tidepool ship --hold`."))
    spec = TrainSpec(model_dir=tmp_path, learning_rate=2e-4)
    # The lowest validation loss (1e-4) answers badly; 4e-4 answers with the taught command.
    backend = AnsweringBackend({2e-4: 1.5, 1e-4: 1.2, 4e-4: 1.9}, good=4e-4)
    result = autotune.train(backend, spec, TrainConfig(), data, tmp_path / "run", lambda e: None)
    assert result.best_val_loss == 1.9 and backend.asked == [1, 1, 1]
    record_ = json.loads((tmp_path / "run" / "auto.json").read_text())
    assert [t["validation_suite_success"] for t in record_["trials"]] == [0.0, 0.0, 1.0]
    assert [t["chosen"] for t in record_["trials"]] == [False, False, True]


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
