"""`mlx-rsi train --estimate` and the estimate arithmetic; base-model presets.

The measurement is real: a tiny model trains a few steps with the PEFT backend.
No timing is asserted (the machine's speed is not the product's), only that the
estimate follows the run's plan and that nothing is left behind.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest
from tiny_cycle import cycle_workspace

from backends.base import get_backend
from mlx_rsi import autotune
from mlx_rsi.config import Config
from mlx_rsi.errors import ModelError
from mlx_rsi.estimate import Estimate, StepClock, from_clock, measure, planned_steps
from mlx_rsi.modelpath import PRESETS, preset_availability, resolve_base_model
from mlx_rsi.training import spec_from_config


def _dataset(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True)
    rows = [
        {"messages": [{"role": "user", "content": f"question {i}?"},
                      {"role": "assistant", "content": f"answer {i} with `orcactl`"}]}
        for i in range(n)
    ]  # fmt: skip
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "valid.jsonl").write_text(json.dumps(rows[0]) + "\n")
    return folder


def test_estimate_arithmetic_multiplies_steps_and_trials() -> None:
    estimate = Estimate(
        examples=80, steps=40, trials=3, seconds_per_step=2.0, setup_seconds=10.0,
        peak_bytes=2**31, measured_steps=3,
    )  # fmt: skip
    assert estimate.seconds == 3 * (10.0 + 40 * 2.0)
    text = estimate.describe()
    assert "40 steps x 3 learning-rate trials" in text
    assert "4.5 min" in text and "2.0 GiB" in text


def test_step_clock_uses_the_steps_after_the_first() -> None:
    clock = StepClock()
    clock.began, clock.started = 0.0, 5.0
    clock.steps = [(1, 9.0, 50), (4, 15.0, 200)]  # warm-up step 1 took 4 s, then 2 s per step
    clock.total_steps = 40
    assert clock.seconds_per_step() == 2.0
    estimate = from_clock(clock, examples=80, trials=1)
    assert estimate is not None
    assert estimate.setup_seconds == 5.0 and estimate.measured_steps == 3
    assert estimate.seconds == 5.0 + 40 * 2.0


def test_step_clock_scales_to_the_average_steps_tokens() -> None:
    from backends.base import TrainEvent

    clock = StepClock(examples_per_step=4)
    # the split: 100 examples with 6,000 trained tokens, so 240 per step on average
    clock(TrainEvent("start", extra={"examples": 100, "target_tokens": 6000}))
    clock.steps = [(1, 10.0, 120), (4, 16.0, 480)]  # short batches: 120 tokens, 2 s a step
    assert clock.seconds_per_step() == 4.0  # an average step has twice the tokens
    # with prompts (40 tokens an example, 160 a step) the same batches are not as short
    clock = StepClock(examples_per_step=4)
    clock(TrainEvent("start", extra={"examples": 100, "target_tokens": 6000, "tokens": 10000}))
    clock.steps = [(1, 10.0, 120), (4, 16.0, 480)]
    assert clock.seconds_per_step() == 2.0 * (240 + 160) / (120 + 160)


def test_a_cycles_estimate_scales_its_first_steps_to_the_split(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The cycle's timer hands the start event's split counts to its clock."""
    from backends.base import TrainEvent
    from mlx_rsi.commands.train import TrainingTimer
    from mlx_rsi.ui import UI

    timer = TrainingTimer(UI(), Config())  # batch 2 x accumulation 2: 4 examples a step
    start = {"examples": 100, "target_tokens": 6000, "tokens": 10000}
    timer(TrainEvent("start", total_steps=75, extra=start))
    assert timer.clock is not None
    timer.clock.started = 0.0  # ten steps of short batches (120 trained tokens), 2 s each
    timer.clock(TrainEvent("step", step=10, total_steps=75, trained_tokens=1200))
    timer.clock.steps[-1] = (10, 20.0, 1200)
    timer.estimate = from_clock(timer.clock, timer.examples, trials=1)
    assert timer.estimate is not None
    assert timer.estimate.seconds_per_step == pytest.approx(2.0 * (240 + 160) / (120 + 160))


def test_step_clock_before_any_step_gives_no_estimate() -> None:
    assert from_clock(StepClock(), examples=10, trials=1) is None


def test_measure_follows_the_run_plan_and_leaves_nothing(
    tiny_llama_dir: Path, tmp_path: Path
) -> None:
    data = _dataset(tmp_path / "data", 30)
    before = sorted(p.name for p in data.iterdir())
    leftovers = set(Path(tempfile.gettempdir()).glob("mlx-rsi-estimate-*"))
    cfg = Config()
    spec = spec_from_config(cfg.train, tiny_llama_dir)
    estimate = measure(get_backend("peft"), spec, cfg.train, data, steps=3)
    # the plan of the real run: 30 examples at 4 per step for 3 epochs = 24 steps,
    # raised to train.min_steps (60; train.max_epochs would allow 8 per epoch x 10)
    assert estimate.steps == planned_steps(spec, cfg.train, 30) == 60
    assert estimate.trials == len(autotune.LR_FACTORS)  # train.auto is on by default
    assert estimate.examples == 30
    assert estimate.seconds_per_step > 0 and estimate.peak_bytes > 0
    assert estimate.measured_steps == 2
    assert sorted(p.name for p in data.iterdir()) == before
    assert set(Path(tempfile.gettempdir()).glob("mlx-rsi-estimate-*")) == leftovers


def test_train_estimate_cli_measures_without_a_cycle(cli, tiny_llama_dir: Path) -> None:
    ws = cycle_workspace(cli, tiny_llama_dir)
    done = cli("train", "--estimate")
    assert done.exit_code == 0, done.output
    assert "estimate:" in done.output and "steps" in done.output
    assert not any((ws / "datasets").glob("v*")), "an estimate builds no dataset version"
    assert not any((ws / "runs").iterdir()), "an estimate records no run"
    status = cli("versions")
    assert "v1.1" not in status.output


def _fake_hf_cache(root: Path, repo: str, model_dir: Path) -> Path:
    folder = root / f"models--{repo.replace('/', '--')}"
    snapshot = folder / "snapshots" / "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(model_dir, snapshot)
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(snapshot.name)
    return snapshot


def test_presets_resolve_only_from_the_hf_cache(
    tiny_llama_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    with pytest.raises(ModelError) as missing:
        resolve_base_model("small")
    assert "hf download zenlm/zen-nano-instruct" in (missing.value.hint or "")
    assert preset_availability() == {name: None for name in PRESETS}
    snapshot = _fake_hf_cache(cache, PRESETS["small"][0], tiny_llama_dir)
    assert resolve_base_model("small") == snapshot
    assert preset_availability()["small"] == snapshot
    assert preset_availability()["medium"] is None


def test_doctor_lists_base_models(cli) -> None:
    done = cli("doctor", "--json")
    rows = {row[0]: row for row in json.loads(done.output)["base_models"]}
    assert set(rows) == {"gemma3-270m", *PRESETS}
    assert rows["medium"][1].startswith("meta-llama/Llama-2-7b-hf")
