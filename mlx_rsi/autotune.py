"""Training settings that learn: a floor on optimizer steps and ``train.auto``.

Measured on the embedded Gemma-3-270M (FACTS.md, docs/eval.md): 1 epoch at 1e-5
(19 optimizer steps) left greedy answers unchanged; 3 epochs at 2e-4 (57 steps)
learned most topics, and 1e-3 in batches of 2 x 2 also taught the facts and the
model's own name (docs/eval.md). So the defaults are 1e-3 for 3 epochs, and a small dataset
still gets at least ``train.min_steps`` optimizer steps — but never more than
``train.max_epochs`` passes over it (scaled to its size, so 20 examples are not
repeated 40 times).

``train.auto`` (default on) trains a small set of learning rates around the
configured one — the configured first (in the run's own folder, so it resumes
like any run), then half, then double — each from scratch on the training split,
as long as ``train.auto_budget_minutes`` allows another trial of the same length,
and keeps the adapter that does best on the *validation suite* — cases built from
the validation sessions the way the held-out suite is built from the test sessions
(``mlx_rsi.eval.heldout``), answered greedily by each trial — with the lowest
validation loss breaking ties (and deciding alone when the validation sessions
make no case). Loss alone is not enough: in the runs of docs/eval.md on the
embedded model, validation loss ranked the learning rates in the opposite order
of what they taught (a confident wrong fact costs more loss than a vague answer).
It applies when the run's
length comes from epochs: an explicit ``max_steps`` or a resumed run trains as
configured. The test split and the held-out suite are never used to
choose: they judge the result afterwards. Trials live in ``runs/<id>/trials/``;
``runs/<id>/auto.json`` records every trial, and the winner's metrics are copied
to ``runs/<id>/metrics.jsonl`` for the report's loss curves.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
import time
from pathlib import Path

from backends.base import Backend, OnEvent, TrainResult, TrainSpec
from mlx_rsi import atomic
from mlx_rsi.config import TrainConfig

log = logging.getLogger(__name__)
LR_FACTORS = (1.0, 0.5, 2.0)  # configured first: it is the one that must always run
VALIDATION_TOKENS = 64  # eval.max_new_tokens' default: the suite judges answers this long


def count_examples(dataset_dir: Path) -> int:
    path = dataset_dir / "train.jsonl"
    if not path.is_file():
        return 0
    return sum(1 for line in path.read_bytes().splitlines() if line.strip())


def with_min_steps(spec: TrainSpec, train: TrainConfig, num_examples: int) -> TrainSpec:
    """``spec`` with ``max_steps`` raised to the step floor when epochs give fewer."""
    if spec.max_steps is not None or num_examples <= 0 or train.min_steps <= 0:
        return spec
    planned = spec.total_steps(num_examples)
    per_epoch = max(1, math.ceil(num_examples / (spec.batch_size * spec.grad_accum)))
    floor = min(train.min_steps, math.ceil(per_epoch * train.max_epochs))
    if planned >= floor:
        return spec
    log.info(
        "%d examples give %d optimizer steps; training %d (train.min_steps)",
        num_examples,
        planned,
        floor,
    )
    return dataclasses.replace(spec, max_steps=floor)


def trial_specs(spec: TrainSpec) -> list[TrainSpec]:
    return [dataclasses.replace(spec, learning_rate=spec.learning_rate * f) for f in LR_FACTORS]


def auto_applies(spec: TrainSpec, train_cfg: TrainConfig) -> bool:
    """Auto tries settings for a fresh run whose length comes from epochs; a resumed
    run or an explicit ``max_steps`` (the user chose the run) trains as configured."""
    return train_cfg.auto and not spec.resume and train_cfg.max_steps is None


def train(
    backend: Backend,
    spec: TrainSpec,
    train_cfg: TrainConfig,
    dataset_dir: Path,
    out_dir: Path,
    on_event: OnEvent,
) -> TrainResult:
    """One training, or the ``train.auto`` search (module doc) when enabled."""
    started = time.monotonic()
    first = backend.train(spec, dataset_dir, out_dir, on_event)  # the run's own layout
    if not auto_applies(spec, train_cfg):
        return first
    budget = train_cfg.auto_budget_minutes * 60
    trials: list[tuple[TrainSpec, TrainResult, Path]] = [(spec, first, out_dir)]
    for n, candidate in enumerate(trial_specs(spec)[1:], start=1):
        elapsed = time.monotonic() - started
        if elapsed + elapsed / len(trials) > budget:
            log.info(
                "train.auto: budget of %.0f min reached after %d trial(s)",
                train_cfg.auto_budget_minutes,
                len(trials),
            )
            break
        folder = out_dir / "trials" / f"{n}-lr{candidate.learning_rate:.2e}"
        result = backend.train(candidate, dataset_dir, folder, on_event)
        trials.append((candidate, result, folder))
    success = suite_success(backend, spec, dataset_dir, [r.adapter_dir for _, r, _ in trials])
    best = min(range(len(trials)), key=lambda i: (-(success[i] or 0.0), _val(trials[i][1]), i))
    _record(out_dir, trials, best, success)
    return trials[best][1]


def suite_success(
    backend: Backend, spec: TrainSpec, dataset_dir: Path, adapters: list[Path]
) -> list[float | None]:
    """Each adapter's success on the validation suite (None each when it has no case)."""
    from mlx_rsi.dataset import read_split
    from mlx_rsi.eval.heldout import build_heldout_suite
    from mlx_rsi.eval.suites import judge

    suite = build_heldout_suite(
        read_split(dataset_dir / "valid.jsonl"),
        training=read_split(dataset_dir / "train.jsonl"),
        rejected=[],
        categorize=lambda request: "validation",
        name="validation",
    )
    if suite is None or len(adapters) < 2:
        return [None] * len(adapters)
    prompts = [[{"role": "user", "content": case.input}] for case in suite.cases]
    rates: list[float | None] = []
    for adapter in adapters:
        answers = backend.generate(
            spec.model_dir, adapter, prompts, max_tokens=VALIDATION_TOKENS, temperature=0.0
        )
        passed = sum(
            judge(case, text).passed for case, text in zip(suite.cases, answers, strict=True)
        )
        rates.append(passed / len(suite.cases))
    return rates


def _val(result: TrainResult) -> float:
    return result.best_val_loss if result.best_val_loss is not None else math.inf


def _record(
    out_dir: Path,
    trials: list[tuple[TrainSpec, TrainResult, Path]],
    best: int,
    success: list[float | None],
) -> None:
    rows = [
        {
            "learning_rate": s.learning_rate,
            "steps": r.steps,
            "validation_suite_success": success[i],
            "best_val_loss": r.best_val_loss,
            "final_loss": r.final_loss,
            "seconds": r.seconds,
            "folder": str(folder),
            "chosen": i == best,
        }
        for i, (s, r, folder) in enumerate(trials)
    ]
    atomic.write_text(out_dir / "auto.json", json.dumps({"trials": rows}, indent=2))
    metrics = trials[best][2] / "metrics.jsonl"
    if best > 0 and metrics.is_file():
        shutil.copyfile(out_dir / "metrics.jsonl", out_dir / "metrics-configured.jsonl")
        shutil.copyfile(metrics, out_dir / "metrics.jsonl")
    chosen = rows[best]
    log.info(
        "train.auto: kept learning rate %.2e (validation suite %s, loss %s) of %d trial(s)",
        chosen["learning_rate"],
        "n/a" if success[best] is None else f"{success[best]:.0%}",
        chosen["best_val_loss"],
        len(rows),
    )
