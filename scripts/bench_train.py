"""Training benchmarks on the real base model: one table, one function per comparison.

(a) ``peft-vs-plain``: the PEFT backend against a plain transformers + peft loop (the
    FACTS.md anchor: 84.7 tok/s) on the same model (the embedded Gemma-3-270M), the same
    data (one epoch of synthetic chats, alpaca fallback template, prompt tokens masked,
    cutoff 256), the same LoRA (r=8, alpha 16, q_proj/v_proj of the last 8 blocks), batch 4
    and the same number of steps. Each side runs in its own process, so its peak RSS is
    its own. Throughput is trained (loss-carrying) tokens per second of training.
(b) ``mlx-vs-mlx-lm``: the MLX backend against mlx-lm's own CLI (``python -m mlx_lm lora``,
    run in the worker process with its report recorded) on the tiny llama (MLX's Linux CPU
    build is far too slow for the 270M model, FACTS.md), the same chats (one assistant turn,
    so ``--mask-prompt`` trains what we train), LoRA (r=8, scale 2, q_proj/v_proj of every
    block), batch 4, cutoff 256 and steps. Timed over the report windows after the first
    (which holds mx.compile's tracing), from each side's own window throughput.

Add a comparison: write ``compare_x(args) -> list[Measure]`` and register it in
``COMPARISONS``; workers (one side each, run in a subprocess) go in ``WORKERS``.

    python scripts/bench_train.py                      # all comparisons
    python scripts/bench_train.py --only peft-vs-plain --steps 24
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

BATCH = 4
CUTOFF = 256
RANK, ALPHA = 8, 16.0
TARGETS = ("q_proj", "v_proj")
LAST_BLOCKS = 8
LEARNING_RATE = 1e-4
SEED = 0


@dataclass
class Measure:
    comparison: str
    side: str
    steps: int
    trained_tokens: int
    seconds: float
    peak_rss_mb: float
    loss: float | None
    baseline: bool = False

    @property
    def tokens_per_second(self) -> float:
        return self.trained_tokens / self.seconds if self.seconds else 0.0


# --- data ------------------------------------------------------------------------------------

TASKS = [
    ("reverse a string", "def reverse(text: str) -> str:\n    return text[::-1]"),
    ("sum a list of numbers", "def total(values: list[float]) -> float:\n    return sum(values)"),
    ("check for a palindrome", "def is_palindrome(s: str) -> bool:\n    return s == s[::-1]"),
    ("count words", "def count_words(text: str) -> int:\n    return len(text.split())"),
    ("read a JSON file", "import json\n\ndef load(path):\n    with open(path) as f:\n"
     "        return json.load(f)"),
    ("find the maximum", "def largest(values):\n    best = values[0]\n    for v in values:\n"
     "        if v > best:\n            best = v\n    return best"),
]  # fmt: skip


def synthetic_chats(count: int, seed: int = SEED) -> list[dict[str, Any]]:
    """Coding-assistant chats of varied length (deterministic)."""
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        task, code = TASKS[i % len(TASKS)]
        context = " ".join(rng.choice(["The", "input", "may", "be", "empty", "or", "large."])
                           for _ in range(rng.randint(2, 60)))  # fmt: skip
        notes = "\n".join(f"- step {k + 1}: handle case {rng.randint(0, 99)}"
                          for k in range(rng.randint(0, 12)))  # fmt: skip
        rows.append(
            {
                "messages": [
                    {"role": "system", "content": "You are a careful Python assistant."},
                    {"role": "user", "content": f"Write a function to {task}. {context}"},
                    {"role": "assistant", "content": f"Here it is:\n\n{code}\n\n{notes}".strip()},
                ]
            }
        )
    return rows


def write_data(folder: Path, rows: list[dict[str, Any]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def peak_rss_mb() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return usage / (1024 * 1024) if sys.platform == "darwin" else usage / 1024


# --- workers (one side each, in its own process) ---------------------------------------------


def plain_loop(model_dir: Path, data_dir: Path, steps: int, *, grouped: bool) -> dict[str, Any]:
    """The anchor: AutoModelForCausalLM + peft, full logits, fp32, grad clipping at 1.0.

    ``grouped=False`` takes shuffled batches (the loop people write); ``grouped=True`` takes
    exactly the backend's length-grouped batches, so its per-step losses must match.
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from backends.chat import encode_dataset, load_tokenizer, read_jsonl
    from backends.torch_data import BatchStream, num_targets
    from backends.torch_model import target_module_names

    torch.manual_seed(SEED)
    tokenizer = load_tokenizer(model_dir)
    examples = encode_dataset(
        tokenizer, read_jsonl(data_dir / "train.jsonl"), template="auto", cutoff_len=CUTOFF
    ).examples
    examples = [e for e in examples if num_targets(e) > 0]
    model: Any = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    names = target_module_names(model, TARGETS, LAST_BLOCKS)
    config = LoraConfig(r=RANK, lora_alpha=int(ALPHA), lora_dropout=0.0, target_modules=names)
    model = get_peft_model(model, config)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=LEARNING_RATE, weight_decay=0.0)
    order = list(range(len(examples)))
    random.Random(SEED).shuffle(order)
    stream = BatchStream(examples, BATCH, SEED)
    pad = tokenizer.pad_token_id or 0
    trained = 0
    losses: list[float] = []
    began = time.perf_counter()
    for step in range(steps):
        indices = stream.batch(step) if grouped else order[step * BATCH : (step + 1) * BATCH]
        batch = [examples[i] for i in indices]
        width = max(len(e.ids) for e in batch)
        ids = torch.full((len(batch), width), pad)
        labels = torch.full((len(batch), width), -100)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for row, e in enumerate(batch):
            ids[row, : len(e.ids)] = torch.tensor(e.ids)
            attention[row, : len(e.ids)] = 1
            labels[row, : len(e.ids)] = torch.tensor(
                [t if m else -100 for t, m in zip(e.ids, e.mask, strict=True)]
            )
        loss = model(input_ids=ids, attention_mask=attention, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        optimizer.zero_grad()
        trained += int((labels[:, 1:] != -100).sum())
        losses.append(float(loss.detach()))
    seconds = time.perf_counter() - began
    return {"trained_tokens": trained, "seconds": seconds, "losses": losses}


def worker_plain(model_dir: Path, data_dir: Path, steps: int, out_dir: Path) -> dict[str, Any]:
    return plain_loop(model_dir, data_dir, steps, grouped=False)


def worker_plain_grouped(
    model_dir: Path, data_dir: Path, steps: int, out_dir: Path
) -> dict[str, Any]:
    return plain_loop(model_dir, data_dir, steps, grouped=True)


def worker_peft(model_dir: Path, data_dir: Path, steps: int, out_dir: Path) -> dict[str, Any]:
    """The PEFT backend with its defaults (precision auto: bf16 autocast on the CPU)."""
    from backends.base import TrainSpec
    from backends.peft_lora import PeftBackend

    spec = TrainSpec(
        model_dir=model_dir, rank=RANK, alpha=ALPHA, dropout=0.0, target_modules=TARGETS,
        num_layers=LAST_BLOCKS, learning_rate=LEARNING_RATE, schedule="constant",
        warmup_ratio=0.0, max_steps=steps, batch_size=BATCH, grad_accum=1, cutoff_len=CUTOFF,
        seed=SEED, save_steps=steps + 1, logging_steps=1, precision="auto",
    )  # fmt: skip
    result = PeftBackend().train(spec, data_dir, out_dir / "run", lambda event: None)
    lines = (out_dir / "run" / "metrics.jsonl").read_text().splitlines()
    losses = [json.loads(line)["loss"] for line in lines if '"kind":"train"' in line]
    return {"trained_tokens": result.trained_tokens, "seconds": result.seconds, "losses": losses}


# --- (b) mlx-vs-mlx-lm: the MLX backend against `python -m mlx_lm lora` -----------------------

MLX_REPORT_EVERY = 4  # steps per report window; the first window (compile) is not timed


def _steady(windows: list[tuple[int, float]]) -> tuple[int, float]:
    """(trained tokens, seconds) over report windows after the first.

    ``windows`` holds (cumulative trained tokens, tokens/s of that window) per report.
    """
    from itertools import pairwise

    tokens = seconds = 0.0
    for (before, _), (after, rate) in pairwise(windows):
        tokens += after - before
        seconds += (after - before) / rate if rate else 0.0
    return int(tokens), seconds


def _mlx_spec(model_dir: Path, steps: int) -> Any:
    from backends.base import TrainSpec

    return TrainSpec(
        model_dir=model_dir, rank=RANK, alpha=ALPHA, dropout=0.0, target_modules=TARGETS,
        num_layers=None, learning_rate=LEARNING_RATE, schedule="constant", warmup_ratio=0.0,
        max_steps=steps, batch_size=BATCH, grad_accum=1, cutoff_len=CUTOFF, seed=SEED,
        save_steps=steps + 1, logging_steps=MLX_REPORT_EVERY,
    )  # fmt: skip


def worker_mlx(model_dir: Path, data_dir: Path, steps: int, out_dir: Path) -> dict[str, Any]:
    """The MLX backend (every assistant turn masked, head only at trained positions)."""
    from backends.mlx_lora import MlxBackend

    MlxBackend().train(_mlx_spec(model_dir, steps), data_dir, out_dir / "run", lambda e: None)
    records = [json.loads(line) for line in (out_dir / "run" / "metrics.jsonl").open()]
    train = [r for r in records if r["kind"] == "train"]
    tokens, seconds = _steady([(r["trained_tokens"], r["tokens_per_second"]) for r in train])
    return {"trained_tokens": tokens, "seconds": seconds, "loss": train[-1]["loss"]}


def worker_mlx_lm(model_dir: Path, data_dir: Path, steps: int, out_dir: Path) -> dict[str, Any]:
    """mlx-lm's own CLI (`python -m mlx_lm lora`) in this process, its report recorded.

    Same data (a single assistant turn per chat, so ``--mask-prompt`` trains what we
    train), LoRA keys, rank, scale, batch, cutoff and steps. mlx-lm needs a valid split.
    """
    import shutil

    from mlx_lm import cli_ui, lora

    data = out_dir / "data"
    data.mkdir()
    shutil.copy(data_dir / "train.jsonl", data / "train.jsonl")
    head = (data_dir / "train.jsonl").read_text().splitlines()[:BATCH]
    (data / "valid.jsonl").write_text("".join(line + "\n" for line in head))
    keys = ", ".join(f"self_attn.{t}" for t in TARGETS)
    config = out_dir / "lora.yaml"
    config.write_text(
        f"lora_parameters: {{rank: {RANK}, scale: {ALPHA / RANK}, dropout: 0.0, keys: [{keys}]}}\n"
    )
    reports: list[tuple[int, float, float]] = []
    original = cli_ui.TrainUI.report_train

    def record(self: Any, it: int, loss: float, rate: float, trained: int) -> None:
        reports.append((trained, rate, loss))
        original(self, it, loss, rate, trained)

    cli_ui.TrainUI.report_train = record  # type: ignore[method-assign]
    sys.argv = [
        "mlx_lm.lora", "--model", str(model_dir), "--train", "--data", str(data),
        "--fine-tune-type", "lora", "--num-layers", "-1", "--batch-size", str(BATCH),
        "--iters", str(steps), "--learning-rate", str(LEARNING_RATE), "--mask-prompt",
        "--steps-per-report", str(MLX_REPORT_EVERY), "--steps-per-eval", str(steps + 1),
        "--val-batches", "1", "--save-every", str(steps + 1), "--max-seq-length", str(CUTOFF),
        "--seed", str(SEED), "--adapter-path", str(out_dir / "adapters"), "-c", str(config),
    ]  # fmt: skip
    lora.main()
    tokens, seconds = _steady([(t, rate) for t, rate, _ in reports])
    return {"trained_tokens": tokens, "seconds": seconds, "loss": reports[-1][2]}


def compare_mlx_vs_mlx_lm(args: argparse.Namespace) -> list[Measure]:
    from mlx_rsi.tinymodel import build_tiny_model

    measures = []
    with tempfile.TemporaryDirectory(prefix="bench-mlx-") as tmp:
        model_dir = build_tiny_model(Path(tmp) / "tiny-llama", arch="llama")
        data_dir = write_data(Path(tmp) / "data", synthetic_chats(args.steps * BATCH))
        for side, label, baseline in (
            ("mlx_lm", "python -m mlx_lm lora", True),
            ("mlx", "MLX backend", False),
        ):
            raw = run_worker(side, model_dir, data_dir, args.steps)
            measures.append(
                Measure(
                    "mlx-vs-mlx-lm",
                    label,
                    args.steps,
                    raw["trained_tokens"],
                    raw["seconds"],
                    raw["peak_rss_mb"],
                    raw["loss"],
                    baseline,
                )
            )
    return measures


WORKERS: dict[str, Callable[[Path, Path, int, Path], dict[str, Any]]] = {
    "plain": worker_plain,
    "plain-grouped": worker_plain_grouped,
    "peft": worker_peft,
    "mlx": worker_mlx,
    "mlx_lm": worker_mlx_lm,
}


def run_worker(name: str, model_dir: Path, data_dir: Path, steps: int) -> dict[str, Any]:
    """Run one side in a fresh process and return its measurements (peak RSS included)."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
        result_file = Path(tmp) / "result.json"
        command = [
            *(sys.executable, __file__, "--worker", name, "--model", str(model_dir)),
            *("--data", str(data_dir), "--steps", str(steps), "--result", str(result_file)),
        ]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        subprocess.run(command, check=True, env=env, cwd=REPO)
        return dict(json.loads(result_file.read_text()))


# --- comparisons -----------------------------------------------------------------------------


SIDES = {
    "plain": "transformers+peft loop (shuffled batches)",
    "plain-grouped": "transformers+peft loop (backend's batches)",
    "peft": "PEFT backend",
}


def compare_peft_vs_plain(args: argparse.Namespace) -> list[Measure]:
    from mlx_rsi.basemodel import ensure_base_model

    model_dir = Path(args.model) if args.model else ensure_base_model()
    measures = []
    losses: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-data-") as tmp:
        data_dir = write_data(Path(tmp), synthetic_chats(args.steps * BATCH))
        for side in args.sides:
            raw = run_worker(side, model_dir, data_dir, args.steps)
            losses[side] = raw["losses"]
            mean = sum(raw["losses"]) / len(raw["losses"])
            measures.append(
                Measure("peft-vs-plain", SIDES[side], args.steps, raw["trained_tokens"],
                        raw["seconds"], raw["peak_rss_mb"], mean, baseline=side == "plain")
            )  # fmt: skip
    if "plain-grouped" in losses and "peft" in losses:
        pairs = zip(losses["plain-grouped"], losses["peft"], strict=True)
        worst = max(abs(a - b) / abs(a) for a, b in pairs)
        print(f"same batches, per-step loss: backend vs plain loop differ by <= {worst:.2%}")
    return measures


COMPARISONS: dict[str, Callable[[argparse.Namespace], list[Measure]]] = {
    "peft-vs-plain": compare_peft_vs_plain,
    "mlx-vs-mlx-lm": compare_mlx_vs_mlx_lm,
}


def render_table(measures: list[Measure]) -> str:
    header = ("comparison", "side", "steps", "trained tok", "seconds", "tok/s", "peak RSS MB",
              "mean loss", "speed-up")  # fmt: skip
    rows = [header]
    baselines = {m.comparison: m for m in measures if m.baseline}
    for m in measures:
        base = baselines.get(m.comparison)
        ratio = m.tokens_per_second / base.tokens_per_second if base else float("nan")
        rows.append((m.comparison, m.side, str(m.steps), str(m.trained_tokens),
                     f"{m.seconds:.1f}", f"{m.tokens_per_second:.1f}", f"{m.peak_rss_mb:.0f}",
                     "-" if m.loss is None else f"{m.loss:.3f}", f"{ratio:.2f}x"))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(COMPARISONS), action="append")
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument(
        "--sides", nargs="+", choices=sorted(SIDES), default=["plain", "plain-grouped", "peft"]
    )
    parser.add_argument("--model", help="HF-layout model folder (default: the embedded Gemma)")
    parser.add_argument("--json", help="also write the measures to this JSON file")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        with tempfile.TemporaryDirectory(prefix="bench-out-") as out:
            raw = WORKERS[args.worker](Path(args.model), Path(args.data), args.steps, Path(out))
        raw["peak_rss_mb"] = peak_rss_mb()
        Path(args.result).write_text(json.dumps(raw))
        return 0
    measures = [m for name in (args.only or COMPARISONS) for m in COMPARISONS[name](args)]
    print(render_table(measures))
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(m) for m in measures], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
