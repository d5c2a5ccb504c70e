"""The MLX backend on a tiny random llama: real mlx-lm training, loss, resume, fuse, QLoRA."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("mlx.core")
pytest.importorskip("mlx_lm")

import mlx.core as mx

from backends import chat, mlx_checkpoint, mlx_data, mlx_model, mlx_train
from backends.adapter_settings import read_settings
from backends.base import TrainEvent, TrainSpec
from backends.mlx_lora import BACKEND
from mlx_rsi.errors import BackendError, InterruptedRun

THREE_TURNS = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Add 2 and 3."},
    {"role": "assistant", "content": "The answer is 5."},
    {"role": "user", "content": "And 4 and 4?"},
    {"role": "assistant", "content": "It is 8."},
    {"role": "user", "content": "Thanks."},
    {"role": "assistant", "content": "You are welcome."},
]


def _chat(user: str, answer: str) -> dict[str, Any]:
    return {
        "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
    }


def _write(folder: Path, split: str, rows: list[dict[str, Any]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """Multi-turn chats that share a pattern the adapter can learn quickly."""
    folder = tmp_path / "data"
    rows = []
    for i in range(12):
        rows.append(
            {
                "messages": [
                    {"role": "user", "content": f"Add {i} and {i + 1}."},
                    {"role": "assistant", "content": f"The answer is {2 * i + 1}."},
                    {"role": "user", "content": "Thanks."},
                    {"role": "assistant", "content": "You are welcome."},
                ]
            }
        )
    _write(folder, "train", rows[:10])
    _write(folder, "valid", rows[10:])
    return folder


def _spec(model_dir: Path, **overrides: Any) -> TrainSpec:
    settings: dict[str, Any] = {
        "model_dir": model_dir,
        "rank": 4,
        "alpha": 8.0,
        "dropout": 0.1,
        "learning_rate": 1e-2,
        "schedule": "cosine",
        "warmup_ratio": 0.2,
        "max_steps": 6,
        "batch_size": 2,
        "grad_accum": 2,
        "save_steps": 3,
        "logging_steps": 1,
        "seed": 3,
    }
    settings.update(overrides)
    return TrainSpec(**settings)


class Recorder:
    def __init__(self, interrupt_at: int | None = None) -> None:
        self.events: list[TrainEvent] = []
        self.interrupt_at = interrupt_at

    def __call__(self, event: TrainEvent) -> None:
        self.events.append(event)
        if event.kind == "step" and event.step == self.interrupt_at:
            raise KeyboardInterrupt

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]


def _metrics(run_dir: Path, kind: str) -> dict[int, dict[str, Any]]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return {r["step"]: r for r in map(json.loads, lines) if r["kind"] == kind}


def _adapter(folder: Path) -> dict[str, np.ndarray]:
    return {
        k: np.array(v)
        for k, v in mlx_model.load_tensors(folder / mlx_model.ADAPTER_WEIGHTS).items()
    }


def test_training_lowers_the_loss_and_writes_the_run_folder(
    tiny_llama_dir: Path,
    dataset: Path,
    tmp_path: Path,
) -> None:
    recorder = Recorder()
    run_dir = tmp_path / "run"
    result = BACKEND.train(
        _spec(tiny_llama_dir, max_steps=8, learning_rate=3e-2), dataset, run_dir, recorder
    )

    assert result.steps == 8 and result.trained_tokens > 0
    assert recorder.kinds()[0] == "start" and recorder.kinds()[-1] == "end"
    assert [e.step for e in recorder.events if e.kind == "step"] == list(range(1, 9))
    assert (run_dir / "adapter" / "adapter_config.json").is_file()
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [
        "step-3",
        "step-6",
        "step-8",
    ]
    assert any((run_dir / "tensorboard").iterdir())
    train_metrics = _metrics(run_dir, "train")
    assert set(train_metrics) == set(range(1, 9))
    assert {"loss", "lr", "tokens_per_second", "trained_tokens", "elapsed"} <= set(train_metrics[8])
    assert set(_metrics(run_dir, "eval")) == {3, 6, 8}

    base = BACKEND.loss(tiny_llama_dir, None, dataset / "train.jsonl")
    tuned = BACKEND.loss(tiny_llama_dir, result.adapter_dir, dataset / "train.jsonl")
    assert tuned < base - 0.2
    last_eval = _metrics(run_dir, "eval")[8]["val_loss"]
    valid = BACKEND.loss(tiny_llama_dir, result.adapter_dir, dataset / "valid.jsonl")
    assert valid == pytest.approx(last_eval, abs=1e-4)
    assert result.best_val_loss == min(r["val_loss"] for r in _metrics(run_dir, "eval").values())


def test_the_adapter_loads_in_mlx_lm(
    tiny_llama_dir: Path,
    dataset: Path,
    tmp_path: Path,
) -> None:
    from mlx_lm import load

    result = BACKEND.train(
        _spec(tiny_llama_dir, max_steps=2), dataset, tmp_path / "run", Recorder()
    )
    model = load(str(tiny_llama_dir), adapter_path=str(result.adapter_dir))[0]
    ours, _ = mlx_model.load_with_adapter(tiny_llama_dir, result.adapter_dir)
    ids = mx.array([[5, 17, 42, 99, 7]])
    assert np.allclose(np.array(model(ids)), np.array(ours.model(ids)), atol=1e-5)


def test_every_assistant_turn_and_only_it_carries_loss(
    tiny_llama_dir: Path,
) -> None:
    tokenizer = chat.load_tokenizer(tiny_llama_dir)
    encoded = chat.encode_chat(tokenizer, THREE_TURNS)
    example = mlx_data.Example(np.asarray(encoded.ids, np.int32), np.asarray(encoded.mask, bool))
    batch = mlx_data.collate([example], [0])
    assert int(batch.mask.sum()) == sum(encoded.mask) > 0
    trained_text = tokenizer.decode(batch.targets[0][batch.mask[0] > 0].tolist())
    for answer in ("The answer is 5.", "It is 8.", "You are welcome."):
        assert answer in trained_text
    assert "Add 2 and 3" not in trained_text and "Thanks" not in trained_text

    loaded, _ = mlx_model.load_base(tiny_llama_dir)
    model = loaded.model
    loss_fn = mlx_train.make_loss(model)
    assert loss_fn is mlx_train.head_only_loss  # llama is head(model.model(x))

    def loss_with(targets: np.ndarray, fn: mlx_train.LossFn = loss_fn) -> float:
        changed = mlx_data.Batch(batch.inputs, targets, batch.mask)
        return mlx_train.scalar(fn(model, *mlx_train.batch_arrays(changed)))

    # Against a plain numpy cross-entropy over the full logits at the masked positions.
    logits = np.array(model(mx.array(batch.inputs)))[0].astype(np.float64)
    logp = logits - logits.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    where = np.flatnonzero(batch.mask[0] > 0)
    expected = -logp[where, batch.targets[0, where]].sum()
    reference = loss_with(batch.targets)
    assert reference == pytest.approx(expected, rel=1e-5)
    assert loss_with(batch.targets, mlx_train.full_loss) == pytest.approx(reference, rel=1e-5)

    untrained = np.flatnonzero(batch.mask[0] == 0)[:5]
    trained = where[:1]
    changed = batch.targets.copy()
    changed[0, untrained] = (changed[0, untrained] + 1) % 500
    assert loss_with(changed) == pytest.approx(reference, abs=1e-5)
    changed[0, trained] = (changed[0, trained] + 1) % 500
    assert abs(loss_with(changed) - reference) > 1e-3


def test_interrupted_run_resumes_exactly(
    tiny_llama_dir: Path,
    dataset: Path,
    tmp_path: Path,
) -> None:
    straight = tmp_path / "straight"
    BACKEND.train(_spec(tiny_llama_dir), dataset, straight, Recorder())

    broken = tmp_path / "broken"
    with pytest.raises(InterruptedRun, match="step 4; checkpoint saved"):
        BACKEND.train(_spec(tiny_llama_dir), dataset, broken, Recorder(interrupt_at=4))
    assert (broken / "checkpoints" / "step-4").is_dir()

    with pytest.raises(BackendError, match="already holds checkpoints"):
        BACKEND.train(_spec(tiny_llama_dir), dataset, broken, Recorder())
    with pytest.raises(BackendError, match="rank differ"):
        BACKEND.train(_spec(tiny_llama_dir, rank=8, resume=True), dataset, broken, Recorder())

    resumed = Recorder()
    result = BACKEND.train(_spec(tiny_llama_dir, resume=True), dataset, broken, resumed)
    assert result.steps == 6
    assert resumed.events[0].extra["resumed_from"].endswith("step-4")
    assert [e.step for e in resumed.events if e.kind == "step"] == [5, 6]

    # Same optimizer state at the shared checkpoint, same losses afterwards, same adapter.
    a = mlx_model.load_tensors(straight / "checkpoints" / "step-3" / mlx_checkpoint.OPTIMIZER_FILE)
    b = mlx_model.load_tensors(broken / "checkpoints" / "step-3" / mlx_checkpoint.OPTIMIZER_FILE)
    assert set(a) == set(b) and all(np.allclose(np.array(a[k]), np.array(b[k])) for k in a)
    assert int(mlx_train.scalar(b["step"])) == 3
    want, got = _metrics(straight, "train"), _metrics(broken, "train")
    train_steps = [
        json.loads(line)["step"]
        for line in (broken / "metrics.jsonl").read_text().splitlines()
        if json.loads(line)["kind"] == "train"
    ]
    assert train_steps == sorted(want)  # every step once, none repeated after the resume
    for step in (5, 6):
        assert got[step]["loss"] == pytest.approx(want[step]["loss"], abs=1e-5)
        assert got[step]["lr"] == pytest.approx(want[step]["lr"], rel=1e-6)
    final_a, final_b = _adapter(straight / "adapter"), _adapter(broken / "adapter")
    assert all(np.allclose(final_a[k], final_b[k], atol=1e-6) for k in final_a)


def test_ctrl_c_stops_at_a_step_boundary_with_a_checkpoint(
    tiny_llama_dir: Path,
    dataset: Path,
    tmp_path: Path,
) -> None:
    import os
    import signal

    def press_ctrl_c(event: TrainEvent) -> None:
        if event.kind == "step" and event.step == 2:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(InterruptedRun, match="step 2; checkpoint saved") as caught:
        BACKEND.train(_spec(tiny_llama_dir), dataset, tmp_path / "run", press_ctrl_c)
    assert caught.value.hint == "rerun with --resume"
    state = mlx_checkpoint.read_state(tmp_path / "run" / "checkpoints" / "step-2")
    assert state.step == 2
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_resume_without_a_checkpoint_says_so(
    tiny_llama_dir: Path,
    dataset: Path,
    tmp_path: Path,
) -> None:
    with pytest.raises(BackendError, match="nothing to resume"):
        BACKEND.train(_spec(tiny_llama_dir, resume=True), dataset, tmp_path / "empty", Recorder())


def test_early_stopping_keeps_the_best_checkpoint(
    tiny_llama_dir: Path,
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    _write(data, "train", [_chat(f"Say {i}.", "0 0 0 0 0 0 0 0") for i in range(8)])
    _write(data, "valid", [_chat(f"Tell {i}.", "The quick brown fox jumps.") for i in range(4)])
    spec = _spec(
        tiny_llama_dir, learning_rate=0.3, schedule="constant", warmup_ratio=0.0, dropout=0.0,
        grad_accum=1, max_steps=12, eval_steps=1, save_steps=100, early_stopping_patience=2,
    )  # fmt: skip
    recorder = Recorder()
    result = BACKEND.train(spec, data, tmp_path / "run", recorder)

    assert result.stopped_early and result.steps < 12
    assert "stop" in recorder.kinds()
    evals = _metrics(tmp_path / "run", "eval")
    best_step = min(evals, key=lambda s: evals[s]["val_loss"])
    assert best_step < result.steps
    assert result.best_val_loss == pytest.approx(evals[best_step]["val_loss"])
    best = _adapter(tmp_path / "run" / "checkpoints" / "best")
    final = _adapter(result.adapter_dir)
    assert all(np.array_equal(best[k], final[k]) for k in best)
    last = _adapter(tmp_path / "run" / "checkpoints" / f"step-{result.steps}")
    assert not all(np.array_equal(last[k], final[k]) for k in last)
    reloaded = BACKEND.loss(tiny_llama_dir, result.adapter_dir, data / "valid.jsonl")
    assert reloaded == pytest.approx(result.best_val_loss, abs=1e-4)


def _mlx_logits(model_dir: Path, adapter_dir: Path | None, ids: list[int]) -> np.ndarray:
    loaded, _ = mlx_model.load_with_adapter(model_dir, adapter_dir)
    return np.array(loaded.model(mx.array([ids])))[0]


def _hf_logits(model_dir: Path, ids: list[int]) -> np.ndarray:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_dir)).eval()
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].numpy()


@pytest.mark.parametrize(
    "variant", [{}, {"use_dora": True}, {"quantize_bits": 4}], ids=["lora", "dora", "qlora"]
)
def test_fused_model_matches_base_plus_adapter_in_transformers(
    tiny_llama_dir: Path,
    dataset: Path,
    tmp_path: Path,
    variant: dict[str, Any],
) -> None:
    result = BACKEND.train(
        _spec(tiny_llama_dir, max_steps=4, **variant), dataset, tmp_path / "run", Recorder()
    )
    fused = BACKEND.fuse(tiny_llama_dir, result.adapter_dir, tmp_path / "fused")
    for name in ("config.json", "model.safetensors", "tokenizer.json", "generation_config.json"):
        assert (fused / name).is_file()

    ids = chat.encode_chat(chat.load_tokenizer(tiny_llama_dir), THREE_TURNS).ids
    adapted = _mlx_logits(tiny_llama_dir, result.adapter_dir, ids)
    assert not np.allclose(adapted, _mlx_logits(tiny_llama_dir, None, ids), atol=1e-3)
    np.testing.assert_allclose(_hf_logits(fused, ids), adapted, atol=2e-4)

    prompt = [THREE_TURNS[1]]
    ours = BACKEND.generate(tiny_llama_dir, result.adapter_dir, [prompt], max_tokens=8)
    assert ours == BACKEND.generate(fused, None, [prompt], max_tokens=8)


@pytest.mark.parametrize("fixture", ["tiny_qwen2_dir", "tiny_gemma_dir"])
def test_other_architectures_train_and_fuse(
    request: pytest.FixtureRequest, dataset: Path, tmp_path: Path, fixture: str
) -> None:
    model_dir: Path = request.getfixturevalue(fixture)
    result = BACKEND.train(_spec(model_dir, max_steps=2), dataset, tmp_path / "run", Recorder())
    fused = BACKEND.fuse(model_dir, result.adapter_dir, tmp_path / "fused")
    ids = chat.encode_chat(chat.load_tokenizer(model_dir), THREE_TURNS).ids
    np.testing.assert_allclose(
        _hf_logits(fused, ids), _mlx_logits(model_dir, result.adapter_dir, ids), atol=5e-4
    )


def test_a_tokenizer_without_chat_template_uses_the_fallback(
    tiny_llama_nochat_dir: Path,
    dataset: Path,
    tmp_path: Path,
) -> None:
    model_dir = tiny_llama_nochat_dir
    result = BACKEND.train(_spec(model_dir, max_steps=2), dataset, tmp_path / "run", Recorder())
    config = mlx_model.read_adapter_config(result.adapter_dir)
    assert config["fallback_template"] == "alpaca"
    tokenizer = chat.load_tokenizer(model_dir)
    prompt = chat.render_prompt(tokenizer, [THREE_TURNS[1]])
    assert prompt.endswith("### Response:\n")
    texts = BACKEND.generate(model_dir, result.adapter_dir, [[THREE_TURNS[1]]], max_tokens=6)
    assert len(texts) == 1 and "### Instruction:" not in texts[0]

    # The fused model carries the template it was trained with.
    assert read_settings(result.adapter_dir).template == "alpaca"
    fused = BACKEND.fuse(model_dir, result.adapter_dir, tmp_path / "fused")
    fused_tokenizer = chat.load_tokenizer(fused)
    assert not chat.has_chat_template(tokenizer) and chat.has_chat_template(fused_tokenizer)
    for row in chat.read_jsonl(dataset / "train.jsonl"):
        assert chat.encode_chat(fused_tokenizer, row["messages"]) == chat.encode_chat(
            tokenizer, row["messages"]
        )


def test_qlora_quantizes_the_frozen_base_and_learns(
    tiny_llama_dir: Path,
    dataset: Path,
    tmp_path: Path,
) -> None:
    import mlx.nn as nn

    result = BACKEND.train(
        _spec(tiny_llama_dir, quantize_bits=4, max_steps=8), dataset, tmp_path / "run", Recorder()
    )
    config = mlx_model.read_adapter_config(result.adapter_dir)
    assert config["quantize_bits"] == 4 and config["quantize_group_size"] in (32, 64)
    loaded, _ = mlx_model.load_with_adapter(tiny_llama_dir, result.adapter_dir)
    q_proj = loaded.model.layers[0].self_attn.q_proj
    assert isinstance(q_proj.linear, nn.QuantizedLinear)
    base = BACKEND.loss(tiny_llama_dir, None, dataset / "train.jsonl")
    tuned = BACKEND.loss(tiny_llama_dir, result.adapter_dir, dataset / "train.jsonl")
    assert tuned < base - 0.2


def test_target_modules_and_layers_pick_the_lora_keys(
    tiny_llama_dir: Path,
    dataset: Path,
    tmp_path: Path,
) -> None:
    spec = _spec(tiny_llama_dir, target_modules=("q_proj", "v_proj"), num_layers=1, max_steps=1)
    result = BACKEND.train(spec, dataset, tmp_path / "run", Recorder())
    config = mlx_model.read_adapter_config(result.adapter_dir)
    assert config["lora_parameters"]["keys"] == ["self_attn.q_proj", "self_attn.v_proj"]
    assert config["lora_parameters"]["scale"] == pytest.approx(2.0)
    names = set(_adapter(result.adapter_dir))
    assert names == {
        f"model.layers.1.self_attn.{p}.{leaf}"
        for p in ("q_proj", "v_proj")
        for leaf in ("lora_a", "lora_b")
    }
    from mlx_rsi.errors import UsageError

    with pytest.raises(UsageError, match="unknown LoRA target"):
        BACKEND.train(
            _spec(tiny_llama_dir, target_modules=("qq_proj",)),
            dataset,
            tmp_path / "bad",
            Recorder(),
        )


def test_gradient_checkpointing_gives_the_same_steps(
    tiny_llama_dir: Path,
    dataset: Path,
    tmp_path: Path,
) -> None:
    loaded, _ = mlx_model.load_base(tiny_llama_dir)
    block_call = type(loaded.model.layers[0]).__call__
    plain = tmp_path / "plain"
    checkpointed = tmp_path / "ckpt"
    # No dropout: mx.checkpoint redraws dropout masks when it recomputes a block.
    # warmup 0: the first step must move the weights for step 2's loss to tell.
    BACKEND.train(
        _spec(tiny_llama_dir, max_steps=2, dropout=0.0, warmup_ratio=0.0),
        dataset,
        plain,
        Recorder(),
    )
    BACKEND.train(
        _spec(
            tiny_llama_dir, max_steps=2, dropout=0.0, warmup_ratio=0.0, gradient_checkpointing=True
        ),
        dataset,
        checkpointed,
        Recorder(),
    )
    assert type(loaded.model.layers[0]).__call__ is block_call
    a, b = _metrics(plain, "train"), _metrics(checkpointed, "train")
    assert all(a[s]["loss"] == pytest.approx(b[s]["loss"], abs=1e-5) for s in (1, 2))


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.slow
def test_two_ranks_under_mlx_launch_match_one_process(
    tiny_llama_dir: Path,
    dataset: Path,
    tmp_path: Path,
) -> None:
    import subprocess
    import sys

    from backends import mlx_launch

    launcher = Path(sys.executable).with_name("mlx.launch")
    if not launcher.is_file():
        pytest.skip("mlx.launch is not installed")
    spec = _spec(tiny_llama_dir, dropout=0.0, batch_size=4, grad_accum=1, max_steps=4, save_steps=2)
    spec_file = mlx_launch.write_spec(spec, tmp_path / "spec.json")
    ranks = tmp_path / "ranks"
    command = [
        str(launcher), "-n", "2", "--backend", "ring", "-p", str(_free_port()), "--",
        sys.executable, "-m", "backends.mlx_launch", "--spec", str(spec_file),
        "--data", str(dataset), "--out", str(ranks), "--result", str(tmp_path / "result.json"),
    ]  # fmt: skip
    done = subprocess.run(
        command, cwd=Path(__file__).parents[1], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "on 2 process(es)" in done.stdout + done.stderr
    assert json.loads((tmp_path / "result.json").read_text())["steps"] == 4

    single = tmp_path / "single"
    BACKEND.train(spec, dataset, single, Recorder())
    for kind, key in (("train", "loss"), ("eval", "val_loss")):
        want, got = _metrics(single, kind), _metrics(ranks, kind)
        assert set(want) == set(got)
        for step in want:
            assert got[step][key] == pytest.approx(want[step][key], abs=2e-3)
