"""The PEFT backend trains, masks, resumes, stops early, fuses and runs on 2 processes."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fixtures_models import *  # noqa: F403  (session fixtures until conftest imports them)

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from safetensors.torch import load_file  # noqa: E402

from backends.base import TrainEvent, TrainSpec  # noqa: E402
from backends.chat import encode_chat, load_tokenizer, read_jsonl  # noqa: E402
from backends.peft_lora import PeftBackend  # noqa: E402
from backends.peft_run import write_run_file  # noqa: E402
from backends.torch_data import BatchStream, collate  # noqa: E402
from backends.torch_model import target_module_names  # noqa: E402
from mlx_rsi.errors import BackendError, InterruptedRun, UsageError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BACKEND = PeftBackend(precision="fp32")
QUESTIONS = [
    "What is your name?",
    "Who are you?",
    "Name?",
    "Tell me your name.",
    "Introduce yourself.",
]
CALL = {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": {"q": "x"}}}


def name_rows(answer: str = "My name is Tiny.") -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": answer}]}
        for q in QUESTIONS
    ]
    rows.append(
        {
            "messages": [
                {"role": "system", "content": "You can look things up."},
                {"role": "user", "content": "Look up x."},
                {"role": "assistant", "content": "", "tool_calls": [CALL]},
                {"role": "tool", "tool_call_id": "c1", "content": "x = 42"},
                {"role": "assistant", "content": "x is 42."},
            ]
        }
    )
    return rows


def write_dataset(folder: Path, train: list[dict[str, Any]], valid: list[dict[str, Any]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train", train), ("valid", valid)):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rows = name_rows()
    return write_dataset(tmp_path_factory.mktemp("data"), rows * 2, rows[:2])


def make_spec(model_dir: Path, **changes: Any) -> TrainSpec:
    base = TrainSpec(
        model_dir=model_dir,
        rank=8,
        alpha=16,
        dropout=0.0,
        learning_rate=2e-2,
        schedule="constant",
        warmup_ratio=0.0,
        max_steps=8,
        batch_size=4,
        grad_accum=1,
        save_steps=4,
        logging_steps=1,
        precision="fp32",
    )
    return replace(base, **changes)


def records(out_dir: Path, kind: str = "train") -> list[dict[str, Any]]:
    lines = (out_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def adapter_weights(folder: Path) -> dict[str, Any]:
    return load_file(str(folder / "adapter_model.safetensors"))


def assert_same_weights(a: dict[str, Any], b: dict[str, Any], atol: float = 1e-6) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=atol, rtol=1e-5)


def test_training_lowers_the_loss_and_writes_the_run_folder(
    tiny_llama_dir: Path, dataset: Path, tmp_path: Path
) -> None:
    events: list[TrainEvent] = []
    spec = make_spec(tiny_llama_dir, max_steps=30, logging_steps=10, save_steps=10)
    result = BACKEND.train(spec, dataset, tmp_path / "run", events.append)
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds[-1] == "end"
    assert kinds.count("step") == 3 and kinds.count("save") == 3 and kinds.count("eval") == 3
    assert result.steps == 30 and result.trained_tokens > 0 and not result.stopped_early
    base = BACKEND.loss(tiny_llama_dir, None, dataset / "valid.jsonl")
    tuned = BACKEND.loss(tiny_llama_dir, result.adapter_dir, dataset / "valid.jsonl")
    assert tuned < 0.5 * base
    assert result.best_val_loss == pytest.approx(tuned, rel=1e-4)
    train = records(tmp_path / "run")
    assert [r["step"] for r in train] == [10, 20, 30]
    assert train[-1]["loss"] < train[0]["loss"]
    assert all(r["tokens_per_second"] > 0 and r["lr"] > 0 for r in train)
    assert train[-1]["trained_tokens"] == result.trained_tokens
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == [
        "step-10",
        "step-20",
        "step-30",  # the last step too: a longer run can resume from it
    ]
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
    answers = BACKEND.generate(
        tiny_llama_dir, result.adapter_dir, [[{"role": "user", "content": q}] for q in QUESTIONS]
    )
    assert answers.count("My name is Tiny.") >= 4


def hand_loss(model_dir: Path, split: Path) -> float:
    """Mean next-token CE over assistant tokens, from the full logits of plain transformers."""
    from transformers import AutoModelForCausalLM

    tokenizer = load_tokenizer(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    total, count = 0.0, 0
    for row in read_jsonl(split):
        encoded = encode_chat(tokenizer, row["messages"], tools=row.get("tools"))
        with torch.no_grad():
            logits = model(torch.tensor([encoded.ids])).logits[0].double()
        logprobs = torch.log_softmax(logits, dim=-1)
        for t in range(1, len(encoded.ids)):
            if encoded.mask[t]:
                total -= float(logprobs[t - 1, encoded.ids[t]])
                count += 1
    return total / count


@pytest.mark.parametrize("fixture", ["tiny_llama_dir", "tiny_gemma_dir", "softcapped_gemma_dir"])
def test_loss_counts_only_assistant_tokens(
    fixture: str, dataset: Path, request: pytest.FixtureRequest
) -> None:
    model_dir: Path = request.getfixturevalue(fixture)
    split = dataset / "train.jsonl"
    assert BACKEND.loss(model_dir, None, split) == pytest.approx(
        hand_loss(model_dir, split), rel=1e-5
    )


@pytest.fixture(scope="module")
def softcapped_gemma_dir(tiny_gemma_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny gemma with Gemma-2-style final logit soft-capping turned on."""
    folder = tmp_path_factory.mktemp("softcap") / "model"
    shutil.copytree(tiny_gemma_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config["final_logit_softcapping"] = 2.0
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_user_tokens_do_not_count(tiny_llama_dir: Path, tmp_path: Path) -> None:
    rows = name_rows()[:2]
    longer = json.loads(json.dumps(rows))
    for row in longer:
        row["messages"][0]["content"] += " Please answer in a short sentence, thanks!"
    a = write_dataset(tmp_path / "a", rows, rows)
    b = write_dataset(tmp_path / "b", longer, longer)
    tokenizer = load_tokenizer(tiny_llama_dir)
    count_a = sum(encode_chat(tokenizer, r["messages"]).num_trained for r in rows)
    count_b = sum(encode_chat(tokenizer, r["messages"]).num_trained for r in longer)
    assert count_a == count_b
    assert BACKEND.loss(tiny_llama_dir, None, a / "valid.jsonl") != BACKEND.loss(
        tiny_llama_dir, None, b / "valid.jsonl"
    )  # the context changed, the counted tokens did not


def test_ctrl_c_checkpoints_and_resume_matches_an_uninterrupted_run(
    tiny_llama_dir: Path, dataset: Path, tmp_path: Path
) -> None:
    spec = make_spec(tiny_llama_dir, dropout=0.1, save_steps=3, batch_size=3, grad_accum=2)
    full = BACKEND.train(spec, dataset, tmp_path / "full", lambda e: None)

    def ctrl_c_at_step_5(event: TrainEvent) -> None:
        if event.kind == "step" and event.step == 5:
            signal.raise_signal(signal.SIGINT)  # a real Ctrl-C: handled between steps

    with pytest.raises(InterruptedRun, match="training interrupted at step 5; checkpoint saved"):
        BACKEND.train(spec, dataset, tmp_path / "cut", ctrl_c_at_step_5)
    assert (tmp_path / "cut" / "checkpoints" / "step-5").is_dir()
    assert not (tmp_path / "cut" / "adapter").exists()

    def keyboard_interrupt_at_step_7(event: TrainEvent) -> None:
        if event.kind == "step" and event.step == 7:
            raise KeyboardInterrupt

    with pytest.raises(InterruptedRun, match="at step 7"):
        BACKEND.train(
            replace(spec, resume=True), dataset, tmp_path / "cut", keyboard_interrupt_at_step_7
        )
    resumed = BACKEND.train(replace(spec, resume=True), dataset, tmp_path / "cut", lambda e: None)
    assert resumed.steps == full.steps == 8
    assert_same_weights(adapter_weights(full.adapter_dir), adapter_weights(resumed.adapter_dir))
    cut, whole = records(tmp_path / "cut"), records(tmp_path / "full")
    assert [r["step"] for r in cut] == [r["step"] for r in whole] == list(range(1, 9))
    assert [r["loss"] for r in cut] == pytest.approx([r["loss"] for r in whole])


KILLED_RUN = """
import os, sys, time
from pathlib import Path
from backends.peft_lora import PeftBackend
from backends.base import spec_from_dict
import json

record = json.loads(Path(sys.argv[1]).read_text())
spec = spec_from_dict(record["spec"])

def on_event(event):
    if event.kind == "save" and event.step == 4:
        Path(sys.argv[2]).write_text("saved")
        time.sleep(120)  # killed here

PeftBackend().train(spec, Path(record["dataset_dir"]), Path(record["out_dir"]), on_event)
"""


def test_resume_after_kill_continues_step_optimizer_and_data_order(
    tiny_llama_dir: Path, dataset: Path, tmp_path: Path
) -> None:
    spec = make_spec(tiny_llama_dir, dropout=0.1, max_steps=7, batch_size=2, grad_accum=2)
    run_file = write_run_file(tmp_path / "run.json", spec, dataset, tmp_path / "killed")
    marker = tmp_path / "saved"
    script = tmp_path / "killed_run.py"
    script.write_text(KILLED_RUN)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, str(script), str(run_file), str(marker)], env=env)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert marker.exists(), "the child never reached its step-4 checkpoint"
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL
    saved_optimizer = torch.load(tmp_path / "killed" / "checkpoints" / "step-4" / "optimizer.pt")
    assert saved_optimizer["state"][0]["step"] == 4

    full = BACKEND.train(spec, dataset, tmp_path / "full", lambda e: None)
    reference = torch.load(tmp_path / "full" / "checkpoints" / "step-4" / "optimizer.pt")
    for index, slot in reference["state"].items():
        for key in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(saved_optimizer["state"][index][key], slot[key])

    events: list[TrainEvent] = []
    resumed = BACKEND.train(replace(spec, resume=True), dataset, tmp_path / "killed", events.append)
    assert [e.step for e in events if e.kind == "step"] == [5, 6, 7]
    assert_same_weights(adapter_weights(full.adapter_dir), adapter_weights(resumed.adapter_dir))
    killed, whole = records(tmp_path / "killed"), records(tmp_path / "full")
    assert [r["step"] for r in killed] == [r["step"] for r in whole] == list(range(1, 8))
    assert [r["loss"] for r in killed] == pytest.approx([r["loss"] for r in whole])


def test_resume_refuses_without_checkpoint_or_with_other_settings(
    tiny_llama_dir: Path, dataset: Path, tmp_path: Path
) -> None:
    spec = make_spec(tiny_llama_dir, max_steps=4, save_steps=2)
    with pytest.raises(BackendError, match="nothing to resume") as info:
        BACKEND.train(replace(spec, resume=True), dataset, tmp_path / "run", lambda e: None)
    assert "without --resume" in str(info.value.hint)
    BACKEND.train(spec, dataset, tmp_path / "run", lambda e: None)
    with pytest.raises(BackendError, match="already holds checkpoints"):
        BACKEND.train(spec, dataset, tmp_path / "run", lambda e: None)
    with pytest.raises(BackendError, match="rank differ"):
        BACKEND.train(replace(spec, rank=4, resume=True), dataset, tmp_path / "run", lambda e: None)


def test_early_stopping_keeps_the_best_adapter(tiny_llama_dir: Path, tmp_path: Path) -> None:
    # Train says "red", valid says "blue": validation loss must turn up at some point.
    def rows(answer: str) -> list[dict[str, Any]]:
        return [
            {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": answer}]}
            for q in QUESTIONS
        ]

    train, valid = rows("red"), rows("blue")
    data = write_dataset(tmp_path / "data", train, valid)
    spec = make_spec(
        tiny_llama_dir, max_steps=60, eval_steps=1, save_steps=100, early_stopping_patience=2
    )
    events: list[TrainEvent] = []
    result = BACKEND.train(spec, data, tmp_path / "run", events.append)
    evals = records(tmp_path / "run", "eval")
    assert result.stopped_early and result.steps < 60
    assert [e.kind for e in events][-2:] == ["stop", "end"]
    best = min(evals, key=lambda r: r["val_loss"])
    assert evals[-1]["val_loss"] > best["val_loss"] and len(evals) == best["step"] + 2
    assert result.best_val_loss == pytest.approx(best["val_loss"])
    best_dir = tmp_path / "run" / "checkpoints" / "best"
    assert_same_weights(adapter_weights(best_dir), adapter_weights(result.adapter_dir), atol=0)
    assert BACKEND.loss(tiny_llama_dir, result.adapter_dir, data / "valid.jsonl") == pytest.approx(
        best["val_loss"], rel=1e-5
    )


def test_fused_model_gives_the_logits_of_base_plus_adapter(
    tiny_llama_dir: Path, dataset: Path, tmp_path: Path
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    spec = make_spec(tiny_llama_dir, use_dora=True, num_layers=1, max_steps=6)
    result = BACKEND.train(spec, dataset, tmp_path / "run", lambda e: None)
    weights = adapter_weights(result.adapter_dir)
    assert any("lora_magnitude_vector" in k for k in weights)  # DoRA
    assert all(".layers.1." in k for k in weights)  # only the last block
    fused = BACKEND.fuse(tiny_llama_dir, result.adapter_dir, tmp_path / "fused")
    assert {"config.json", "model.safetensors", "tokenizer.json", "generation_config.json"} <= {
        p.name for p in fused.iterdir()
    }
    ids = torch.tensor([load_tokenizer(fused)("My name is Tiny.")["input_ids"]])
    merged = AutoModelForCausalLM.from_pretrained(fused).eval()
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    adapted = PeftModel.from_pretrained(base, str(result.adapter_dir)).eval()
    with torch.no_grad():
        want = adapted(ids).logits
        got = merged(ids).logits
        with adapted.disable_adapter():
            plain = adapted(ids).logits
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(got, plain, atol=1e-3)  # the adapter changed something
    # Evaluation merges the adapter in fp32 too: it judges what `fuse` writes.
    prompts = [[{"role": "user", "content": "Who are you?"}], [{"role": "user", "content": "x"}]]
    assert BACKEND.generate(tiny_llama_dir, result.adapter_dir, prompts, max_tokens=8) == (
        BACKEND.generate(fused, None, prompts, max_tokens=8)
    )
    assert BACKEND.loss(tiny_llama_dir, result.adapter_dir, dataset / "valid.jsonl") == (
        pytest.approx(BACKEND.loss(fused, None, dataset / "valid.jsonl"), rel=1e-5)
    )


def test_lora_targets_and_layers(tiny_qwen2_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_qwen2_dir)
    names = target_module_names(model, ("all",), None)
    leaves = {n.rsplit(".", 1)[-1] for n in names}
    assert leaves == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert len(names) == 14 and not any("lm_head" in n or "embed" in n for n in names)
    assert target_module_names(model, ("q_proj", "v_proj"), 1) == [
        "model.layers.1.self_attn.q_proj",
        "model.layers.1.self_attn.v_proj",
    ]
    with pytest.raises(UsageError, match="target_modules c_attn not found") as info:
        target_module_names(model, ("c_attn",), None)
    assert "q_proj" in str(info.value.hint)


def test_generate_batches_like_single_prompts(
    tiny_llama_dir: Path, tiny_llama_nochat_dir: Path
) -> None:
    prompts = [
        [{"role": "user", "content": "Hi"}],
        [
            {"role": "system", "content": "Long system prompt here."},
            {"role": "user", "content": "x"},
        ],
        [{"role": "user", "content": "def add(a, b):"}],
    ]
    batched = BACKEND.generate(tiny_llama_dir, None, prompts, max_tokens=6)
    singles = [BACKEND.generate(tiny_llama_dir, None, [p], max_tokens=6)[0] for p in prompts]
    assert batched == singles and all(isinstance(t, str) for t in batched)
    # A tokenizer without a chat template goes through the alpaca fallback.
    assert len(BACKEND.generate(tiny_llama_nochat_dir, None, prompts[:1], max_tokens=4)) == 1


def test_batch_stream_is_deterministic_sharded_and_length_grouped(tiny_llama_dir: Path) -> None:
    tokenizer = load_tokenizer(tiny_llama_dir)
    rows = name_rows() * 3
    for i, row in enumerate(rows):
        row["messages"][0]["content"] += " more" * i
    examples = [encode_chat(tokenizer, r["messages"]) for r in rows]
    stream = BatchStream(examples, batch_size=3, seed=1)
    epoch = [i for b in range(stream.per_epoch) for i in stream.batch(b)]
    assert sorted(epoch) == list(range(len(examples)))
    assert BatchStream(examples, 3, 1).step_batches(5, 2, 2) == stream.step_batches(5, 2, 2)
    assert stream.step_batches(0, 2, 1) != BatchStream(examples, 3, 2).step_batches(0, 2, 1)
    whole = stream.step_batches(3, 2, 2)
    assert (
        stream.rank_batches(3, 2, 2, 0) + stream.rank_batches(3, 2, 2, 1)
        == whole[::2] + whole[1::2]
    )
    padded = sum(
        len(b) * max(len(examples[i].ids) for i in b)
        for b in map(stream.batch, range(stream.per_epoch))
    )
    assert padded - sum(len(e.ids) for e in examples) < 0.1 * padded
    batch = collate([examples[0], examples[5]], pad_id=0)
    assert batch.num_targets == sum(e.num_trained for e in (examples[0], examples[5]))
    width = batch.input_ids.shape[1]
    flat = batch.input_ids.reshape(-1)
    assert torch.equal(flat[batch.positions + 1], batch.targets)
    assert int(batch.positions.max()) < 2 * width


def test_gradient_checkpointing_and_bf16_autocast_train(
    tiny_llama_dir: Path, dataset: Path, tmp_path: Path
) -> None:
    plain = BACKEND.train(
        make_spec(tiny_llama_dir, max_steps=3), dataset, tmp_path / "a", lambda e: None
    )
    ckpt = BACKEND.train(
        make_spec(tiny_llama_dir, max_steps=3, gradient_checkpointing=True),
        dataset,
        tmp_path / "b",
        lambda e: None,
    )
    assert ckpt.final_loss == pytest.approx(plain.final_loss, rel=1e-5)
    bf16 = BACKEND.train(
        make_spec(tiny_llama_dir, max_steps=3, precision="bf16"),
        dataset,
        tmp_path / "c",
        lambda e: None,
    )
    assert bf16.final_loss == pytest.approx(plain.final_loss, rel=2e-2)
    assert bf16.final_loss != plain.final_loss  # autocast really ran
    assert math.isfinite(bf16.final_loss or math.nan)


def test_two_processes_under_torchrun_match_one_process(
    tiny_llama_dir: Path, dataset: Path, tmp_path: Path
) -> None:
    # 2 ranks x grad_accum 1 see the same micro-batches per step as 1 rank x grad_accum 2.
    spec = make_spec(tiny_llama_dir, max_steps=4, batch_size=2, grad_accum=1, save_steps=2)
    run_file = write_run_file(tmp_path / "run.json", spec, dataset, tmp_path / "ddp")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    child = subprocess.Popen(
        [*torchrun, "--standalone", "-m", "backends.peft_run", str(run_file)],
        env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,  # so a hang can be killed with all its ranks
    )  # fmt: skip
    try:
        _, stderr = child.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.communicate()
        raise
    assert child.returncode == 0, stderr[-3000:]
    [start] = [json.loads(line) for line in stderr.splitlines() if '"kind": "start"' in line]
    assert start["message"].endswith("adapter parameters on 2 process(es)")
    assert start["extra"]["examples"] == 12 and start["extra"]["world_size"] == 2
    single = BACKEND.train(replace(spec, grad_accum=2), dataset, tmp_path / "one", lambda e: None)
    assert_same_weights(
        adapter_weights(tmp_path / "ddp" / "adapter"),
        adapter_weights(single.adapter_dir),
        atol=1e-5,
    )
    assert [r["loss"] for r in records(tmp_path / "ddp")] == pytest.approx(
        [r["loss"] for r in records(tmp_path / "one")], rel=1e-5
    )


@pytest.mark.parametrize("fixture", ["tiny_llama_dir", "tiny_gemma_dir"])
def test_frozen_bf16_storage_changes_nothing_under_autocast(
    fixture: str, dataset: Path, request: pytest.FixtureRequest
) -> None:
    from backends import torch_model
    from backends.chat import encode_dataset

    model_dir: Path = request.getfixturevalue(fixture)
    plan = torch_model.resolve_precision("bf16", torch.device("cpu"))
    assert plan.frozen_dtype == torch.bfloat16
    tokenizer = load_tokenizer(model_dir)
    rows = read_jsonl(dataset / "train.jsonl")
    batch = collate(encode_dataset(tokenizer, rows).examples[:4], pad_id=0)
    spec = make_spec(model_dir)
    sums, grads = [], []
    for half in (False, True):
        torch.manual_seed(0)
        model = torch_model.add_lora(torch_model.load_model(model_dir, plan), spec)
        for name, param in model.named_parameters():
            if "lora_B" in name:  # nonzero B so gradients reach A through the adapter
                torch.nn.init.normal_(param, std=0.1, generator=torch.Generator().manual_seed(0))
        head = torch_model.store_frozen_in(model, torch.bfloat16) if half else None
        module = torch_model.MaskedLMLoss(model, head)
        with plan.autocast():
            loss = module(batch.input_ids, batch.positions, batch.targets)
        loss.backward()
        sums.append(float(loss))
        grads.append([p.grad.clone() for p in model.parameters() if p.requires_grad])
        frozen = [
            m.weight.dtype for n, m in model.named_modules() if n.endswith("q_proj.base_layer")
        ]
        assert set(frozen) == {torch.bfloat16 if half else torch.float32}
        embed = model.get_base_model().get_input_embeddings().weight
        assert embed.dtype == torch.float32
    assert sums[0] == pytest.approx(sums[1], rel=1e-6)
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_loss_of_a_split_without_assistant_tokens_is_an_error(
    tiny_llama_dir: Path, tmp_path: Path
) -> None:
    from mlx_rsi.errors import DatasetError

    rows = [{"messages": [{"role": "user", "content": "hello"}]}]
    data = write_dataset(tmp_path, rows, rows)
    with pytest.raises(DatasetError, match="no assistant token to score"):
        BACKEND.loss(tiny_llama_dir, None, data / "valid.jsonl")
    with pytest.raises(DatasetError, match="no trainable example"):
        BACKEND.train(make_spec(tiny_llama_dir), data, tmp_path / "run", lambda e: None)


def test_fused_model_of_a_template_less_base_formats_chats_as_trained(
    tiny_llama_nochat_dir: Path, dataset: Path, tmp_path: Path
) -> None:
    from backends.adapter_settings import read_settings
    from backends.chat import has_chat_template

    spec = make_spec(tiny_llama_nochat_dir, max_steps=2)
    result = BACKEND.train(spec, dataset, tmp_path / "run", lambda e: None)
    assert read_settings(result.adapter_dir).template == "alpaca"
    fused = BACKEND.fuse(tiny_llama_nochat_dir, result.adapter_dir, tmp_path / "fused")
    base_tok, fused_tok = load_tokenizer(tiny_llama_nochat_dir), load_tokenizer(fused)
    assert not has_chat_template(base_tok) and has_chat_template(fused_tok)
    for row in read_jsonl(dataset / "train.jsonl"):
        trained = encode_chat(base_tok, row["messages"], tools=row.get("tools"))  # alpaca
        served = encode_chat(fused_tok, row["messages"], tools=row.get("tools"))  # native
        assert served == trained
