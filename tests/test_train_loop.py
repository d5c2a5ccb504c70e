"""The training loop both backends share: one schedule, one cadence, one Ctrl-C behaviour.

The cross-backend tests run the same TrainSpec through MLX and PEFT on a tiny llama built
in-test; the loop-only tests drive ``backends.loop.TrainLoop`` with a scripted framework
(training itself is not what they are about: when the loop logs, saves and stops is).
"""

from __future__ import annotations

import json
import os
import signal
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from backends import loop, run_files
from backends.adapter_settings import read_settings
from backends.base import Backend, TrainEvent, TrainSpec
from mlx_rsi.errors import InterruptedRun

QUESTIONS = ["What is your name?", "Who are you?", "Name?", "Tell me your name.", "Hello?"]


def _rows(answer: str) -> list[dict[str, Any]]:
    return [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": answer}]}
        for q in QUESTIONS
    ]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("loop-data")
    for name, rows in (("train", _rows("My name is Tiny.") * 2), ("valid", _rows("Tiny.")[:3])):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def _spec(model_dir: Path, **changes: Any) -> TrainSpec:
    spec = TrainSpec(
        model_dir=model_dir, rank=4, alpha=8, dropout=0.0, learning_rate=1e-2,
        schedule="cosine", warmup_ratio=0.3, max_steps=7, batch_size=2, grad_accum=1,
        save_steps=3, logging_steps=1, precision="fp32",
    )  # fmt: skip
    return replace(spec, **changes)


def _backend(name: str) -> Backend:
    if name == "mlx":
        pytest.importorskip("mlx_lm")
        from backends.mlx_lora import BACKEND as MLX

        return MLX
    pytest.importorskip("peft")
    from backends.peft_lora import PeftBackend

    return PeftBackend(precision="fp32")


def _records(out_dir: Path, kind: str) -> list[dict[str, Any]]:
    lines = (out_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


# --- the schedule -------------------------------------------------------------------------


def test_warmup_never_trains_a_step_at_zero_and_reaches_the_peak() -> None:
    spec = TrainSpec(model_dir=Path("."), learning_rate=1.0, warmup_ratio=0.2, schedule="cosine")
    rates = [loop.learning_rate(spec, 10, k) for k in range(10)]
    assert loop.warmup_steps(spec, 10) == 2
    assert rates[:3] == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert rates[2:] == sorted(rates[2:], reverse=True) and rates[-1] > 0
    assert loop.learning_rate(spec, 10, 10) == pytest.approx(0.0, abs=1e-12)  # after the last


def test_linear_and_constant_schedules() -> None:
    linear = TrainSpec(model_dir=Path("."), learning_rate=1.0, warmup_ratio=0.0, schedule="linear")
    assert [loop.learning_rate(linear, 4, k) for k in range(4)] == [1, 0.75, 0.5, 0.25]
    constant = replace(linear, schedule="constant", warmup_ratio=0.5)
    assert [loop.learning_rate(constant, 4, k) for k in range(4)] == pytest.approx(
        [1 / 3, 2 / 3, 1, 1]
    )


# --- the same TrainSpec on both backends ---------------------------------------------------


def test_both_backends_train_at_the_same_rate_every_step(
    tiny_llama_dir: Path, dataset: Path, tmp_path: Path
) -> None:
    spec = _spec(tiny_llama_dir)
    expected = [loop.learning_rate(spec, 7, k) for k in range(7)]
    seen: dict[str, list[float]] = {}
    for name in ("mlx", "peft"):
        events: list[TrainEvent] = []
        result = _backend(name).train(spec, dataset, tmp_path / name, events.append)
        assert result.steps == 7
        logged = [r["lr"] for r in _records(tmp_path / name, "train")]
        assert logged == [e.learning_rate for e in events if e.kind == "step"]
        seen[name] = logged
        # The same cadence too: evaluations and checkpoints at the same steps.
        assert [r["step"] for r in _records(tmp_path / name, "eval")] == [3, 6, 7]
        assert [s for s, _ in run_files.list_checkpoints(tmp_path / name)] == [3, 6, 7]
    assert seen["mlx"] == seen["peft"] == expected  # exactly: one function computes both


@pytest.mark.parametrize("name", ["mlx", "peft"])
def test_each_framework_trains_at_the_rate_it_is_given(
    name: str, tiny_llama_dir: Path, dataset: Path, tmp_path: Path
) -> None:
    """At rate 0 the adapter does not move; at the loop's rate it does."""
    _backend(name)
    spec = _spec(tiny_llama_dir)
    if name == "mlx":
        from backends import mlx_train

        run: Any = mlx_train.prepare(spec, dataset, tmp_path)
        framework: Any = mlx_train.MlxFramework(run)
    else:
        from backends import peft_train

        run = peft_train.prepare_run(spec, dataset, tmp_path)
        framework = peft_train.PeftFramework(run)
    framework.save_best(tmp_path / "before", None)
    framework.train_step(0, 0.0)
    framework.save_best(tmp_path / "after-zero", None)
    framework.train_step(1, 1e-2)
    framework.save_best(tmp_path / "after-step", None)
    before, zero, moved = (
        _adapter_bytes(tmp_path / f) for f in ("before", "after-zero", "after-step")
    )
    assert before == zero and zero != moved


def _adapter_bytes(folder: Path) -> bytes:
    weights = [p for p in folder.iterdir() if p.suffix == ".safetensors"]
    assert len(weights) == 1
    return weights[0].read_bytes()


@pytest.mark.parametrize("presses", [1, 2], ids=["ctrl-c", "ctrl-c-twice"])
def test_both_backends_stop_the_same_way_on_sigint(
    presses: int, tiny_llama_dir: Path, dataset: Path, tmp_path: Path
) -> None:
    """SIGINT between steps: a checkpoint of the last finished step, InterruptedRun, no adapter."""
    spec = _spec(tiny_llama_dir)

    def ctrl_c_at_step_2(event: TrainEvent) -> None:
        if event.kind == "step" and event.step == 2:
            for _ in range(presses):
                os.kill(os.getpid(), signal.SIGINT)

    outcome = {}
    for name in ("mlx", "peft"):
        out = tmp_path / name
        with pytest.raises(InterruptedRun) as caught:
            _backend(name).train(spec, dataset, out, ctrl_c_at_step_2)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        outcome[name] = (
            caught.value.one_line(),
            [s for s, _ in run_files.list_checkpoints(out)],
            [r["step"] for r in _records(out, "train")],
            (out / "adapter").exists(),
        )
    assert outcome["mlx"] == outcome["peft"]
    message, checkpoints, logged, adapter = outcome["mlx"]
    assert "training interrupted at step 2; checkpoint saved" in message
    assert "rerun with --resume" in message
    assert (checkpoints, logged, adapter) == ([2], [1, 2], False)


@pytest.mark.parametrize("name", ["mlx", "peft"])
def test_evaluation_uses_the_template_the_adapter_was_trained_with(
    name: str, tiny_llama_nochat_dir: Path, dataset: Path, tmp_path: Path
) -> None:
    """Trained with ``fallback_template: chatml``: loss and prompts render chatml, not alpaca."""
    backend = _backend(name)
    spec = _spec(tiny_llama_nochat_dir, fallback_template="chatml", cutoff_len=512)
    result = backend.train(spec, dataset, tmp_path / "run", lambda e: None)
    settings = read_settings(result.adapter_dir)
    assert (settings.template, settings.fallback_template) == ("chatml", "chatml")
    assert (settings.cutoff_len, settings.train_on) == (512, "assistant")
    valid = dataset / "valid.jsonl"
    # The run's last evaluation rendered chatml; scoring the adapter must give the same.
    trained_eval = _records(tmp_path / "run", "eval")[-1]["val_loss"]
    assert backend.loss(tiny_llama_nochat_dir, result.adapter_dir, valid) == pytest.approx(
        trained_eval, rel=1e-4
    )
    as_alpaca = backend.loss(tiny_llama_nochat_dir, result.adapter_dir, valid, template="alpaca")
    assert abs(as_alpaca - trained_eval) > 1e-3
    # Generation renders the prompt as trained: the same answer as asking for chatml.
    prompt = [_rows("")[0]["messages"][:1]]
    as_trained = backend.generate(tiny_llama_nochat_dir, result.adapter_dir, prompt, max_tokens=8)
    chatml = backend.generate(
        tiny_llama_nochat_dir, result.adapter_dir, prompt, max_tokens=8, template="chatml"
    )
    assert as_trained == chatml
    alpaca = backend.generate(
        tiny_llama_nochat_dir, result.adapter_dir, prompt, max_tokens=8, template="alpaca"
    )
    assert alpaca != chatml  # (the check above tells the two apart)


# --- the loop alone, with a scripted framework ---------------------------------------------


class Scripted:
    """A framework whose steps do no training: for cadence and interrupt tests only."""

    world_size = 1
    is_main = True
    examples = 4
    target_tokens = 40
    tokens = 100
    skipped = 0
    trainable_parameters = 10

    def __init__(self, out_dir: Path, val_losses: list[float], on_step: Any = None) -> None:
        self.out_dir = out_dir
        self.val_losses = list(val_losses)
        self.has_valid = bool(val_losses)
        self.on_step = on_step or (lambda step: None)
        self.rates: list[float] = []
        self.adapter_from: Path | None = None

    def train_step(self, step: int, lr: float) -> int:
        self.on_step(step)
        self.rates.append(lr)
        return 5

    def take_loss_sum(self) -> float:
        return 10.0

    def evaluate(self) -> float:
        return self.val_losses.pop(0)

    def save_checkpoint(self, state: Any) -> Path:
        folder = run_files.checkpoint_dir(self.out_dir, state.step)
        folder.mkdir(parents=True)
        (folder / run_files.STATE_FILE).write_text(state.to_json())
        return folder

    def save_best(self, folder: Path, state: Any) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "step").write_text(str(state.step))

    def write_adapter(self, adapter_dir: Path, best: Path | None) -> None:
        adapter_dir.mkdir(parents=True)
        self.adapter_from = best

    def barrier(self) -> None:
        pass


def _loop(tmp_path: Path, framework: Scripted, events: list[TrainEvent], **changes: Any) -> Any:
    spec = _spec(tmp_path, **changes)
    total = spec.max_steps or 0
    state = run_files.TrainerState()
    return loop.TrainLoop(spec, tmp_path, framework, state, total, events.append)


def test_early_stopping_keeps_the_best_and_saves_where_it_stops(tmp_path: Path) -> None:
    framework = Scripted(tmp_path, [3.0, 2.0, 2.5, 2.6, 9.0])
    events: list[TrainEvent] = []
    result = _loop(
        tmp_path, framework, events, max_steps=10, eval_steps=1, save_steps=3,
        early_stopping_patience=2,
    ).fit()  # fmt: skip
    assert result.stopped_early and result.steps == 4 and result.best_val_loss == 2.0
    assert [e.kind for e in events][-2:] == ["stop", "end"]
    assert "best val_loss 2.0000 at step 2" in events[-2].message
    assert [s for s, _ in run_files.list_checkpoints(tmp_path)] == [3, 4]
    assert framework.adapter_from == tmp_path / "checkpoints" / "best"
    assert (tmp_path / "checkpoints" / "best" / "step").read_text() == "2"
    assert framework.rates == [loop.learning_rate(_spec(tmp_path, max_steps=10), 10, k)
                               for k in range(4)]  # fmt: skip


def test_a_second_ctrl_c_inside_a_step_writes_nothing(tmp_path: Path) -> None:
    def two_presses_in_step_4(step: int) -> None:
        if step == 3:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)  # raises KeyboardInterrupt here

    events: list[TrainEvent] = []
    framework = Scripted(tmp_path, [], on_step=two_presses_in_step_4)
    with pytest.raises(InterruptedRun) as caught:
        _loop(tmp_path, framework, events, save_steps=2).fit()
    assert caught.value.message == "training interrupted during step 4; no checkpoint written"
    assert caught.value.hint == "rerun with --resume (it continues from step 2)"
    assert [s for s, _ in run_files.list_checkpoints(tmp_path)] == [2]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_resumed_loop_continues_the_schedule_and_the_cadence(tmp_path: Path) -> None:
    spec = _spec(tmp_path, save_steps=2)
    state = run_files.TrainerState(step=4, trained_tokens=20, elapsed=1.0)
    framework = Scripted(tmp_path, [])
    events: list[TrainEvent] = []
    result = loop.TrainLoop(
        spec, tmp_path, framework, state, 7, events.append, resumed_from=tmp_path / "x"
    ).fit()
    assert result.steps == 7 and result.trained_tokens == 35
    assert framework.rates == [loop.learning_rate(spec, 7, k) for k in (4, 5, 6)]
    assert [s for s, _ in run_files.list_checkpoints(tmp_path)] == [6, 7]
    assert events[0].extra["resumed_from"] == str(tmp_path / "x")
