"""Before training, an estimate: time and peak memory from a few measured steps.

A first cycle can take two minutes or two hours depending on the dataset, the model,
the backend and the machine, and no table predicts that well. So nothing is guessed:
the configured backend trains a few optimizer steps of *this* dataset on *this*
model in a temporary folder (removed afterwards), the seconds per step after the
first (which pays one-off warm-up) are multiplied by the steps the real run will
take (epochs, ``train.min_steps``, ``train.auto``'s trials), and the model load is
added once per trial. A step's time follows its tokens, and a few batches are not
the dataset's average (the demo's first batches were short everyday requests: 2.5
s/step measured, 3.8 run), so when the backend reports the split's tokens the
seconds per step are scaled from the measured steps' tokens to the average step's.
Steps report trained (answer) tokens only, so each measured example is counted with
the split's average prompt length added: scaling by answer tokens alone
overcorrected (5.3 s/step estimated for that run).

Peak memory is the largest resident size this process (and
any training process it started) reached while measuring: the model, the adapter,
the optimizer state and the activations of real batches.

:class:`StepClock` does the same arithmetic on a real run's own first steps, so a
cycle reports its estimate as soon as it has measured them, and the actual time at
the end (``mlx-rsi train`` prints both).
"""

from __future__ import annotations

import dataclasses
import math
import resource
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from backends.base import Backend, TrainEvent, TrainSpec
from mlx_rsi import autotune, warmstart
from mlx_rsi.config import Config, TrainConfig
from mlx_rsi.workspace import Workspace

MEASURE_STEPS = 4  # optimizer steps trained to measure; the first is warm-up


@dataclass(frozen=True)
class Estimate:
    examples: int
    steps: int  # optimizer steps of one training
    trials: int  # trainings the run will do (train.auto: up to 3)
    seconds_per_step: float
    setup_seconds: float  # model load and preparation, per training
    peak_bytes: int
    measured_steps: int
    warm: str | None = None  # WarmStart.summary() when the run would continue a version

    @property
    def seconds(self) -> float:
        return self.trials * (self.setup_seconds + self.steps * self.seconds_per_step)

    def describe(self) -> str:
        trials = f" x {self.trials} learning-rate trials (train.auto)" if self.trials > 1 else ""
        memory = f", peak memory ~{self.peak_bytes / 2**30:.1f} GiB" if self.peak_bytes else ""
        return (
            f"estimate: {self.examples} examples, {self.steps} steps{trials} at "
            f"{self.seconds_per_step:.1f} s/step + {self.setup_seconds:.0f}s setup ≈ "
            f"{format_minutes(self.seconds)}{memory} "
            f"(measured on {self.measured_steps} steps)" + (f"; {self.warm}" if self.warm else "")
        )


def format_minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f}s"


def planned_steps(spec: TrainSpec, train: TrainConfig, examples: int) -> int:
    """The optimizer steps the real run takes (epochs, then the ``min_steps`` floor)."""
    return autotune.with_min_steps(spec, train, examples).total_steps(examples)


def planned_trials(spec: TrainSpec, train: TrainConfig) -> int:
    return len(autotune.LR_FACTORS) if autotune.auto_applies(spec, train) else 1


def peak_rss_bytes() -> int:
    """Largest resident size of this process and its finished children so far."""
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) * scale


class StepClock:
    """Times the step events of one training (``on_event`` wrapper)."""

    def __init__(self, examples_per_step: int = 0) -> None:
        self.began = time.perf_counter()
        self.started: float | None = None  # the backend's "start" event: setup is done
        self.steps: list[tuple[int, float, int]] = []  # (step, time, trained tokens so far)
        self.total_steps = 0
        self.examples_per_step = examples_per_step  # batch x accumulation (0: unknown)
        self.split_tokens = 0  # trained tokens of one pass over the train split (0: unknown)
        self.split_all_tokens = 0  # all tokens (prompts too) of that pass
        self.split_examples = 0

    def __call__(self, event: TrainEvent) -> None:
        now = time.perf_counter()
        if event.kind == "start" and self.started is None:
            self.started = now
            self.split_tokens = int(event.extra.get("target_tokens") or 0)
            self.split_all_tokens = int(event.extra.get("tokens") or 0)
            self.split_examples = int(event.extra.get("examples") or 0)
        elif event.kind == "step":
            self.steps.append((event.step, now, event.trained_tokens))
            self.total_steps = event.total_steps or self.total_steps

    def seconds_per_step(self) -> float | None:
        """From the first step event to the last one (a steady state: warm-up excluded),
        scaled to the average step's tokens when they are known."""
        if len(self.steps) >= 2:
            (s0, t0, k0), (s1, t1, k1) = self.steps[0], self.steps[-1]
            return self._scaled((t1 - t0) / max(s1 - s0, 1), (k1 - k0) / max(s1 - s0, 1))
        if len(self.steps) == 1 and self.started is not None:
            step, t, tokens = self.steps[0]
            return self._scaled((t - self.started) / max(step, 1), tokens / max(step, 1))
        return None

    def _scaled(self, per_step: float, measured_tokens_per_step: float) -> float:
        if not (self.split_tokens and self.split_examples and self.examples_per_step):
            return per_step
        if measured_tokens_per_step <= 0:
            return per_step
        prompt = max(self.split_all_tokens - self.split_tokens, 0) / self.split_examples
        fixed = prompt * self.examples_per_step  # a step's prompt tokens, on average
        average = self.split_tokens / self.split_examples * self.examples_per_step
        return per_step * (average + fixed) / (measured_tokens_per_step + fixed)

    def setup_seconds(self) -> float:
        return (self.started or self.began) - self.began


def measure(
    backend: Backend,
    spec: TrainSpec,
    train: TrainConfig,
    dataset_dir: Path,
    *,
    steps: int = MEASURE_STEPS,
) -> Estimate:
    """Train ``steps`` steps of ``dataset_dir`` in a temporary folder and extrapolate."""
    examples = autotune.count_examples(dataset_dir)
    probe = dataclasses.replace(
        spec, max_steps=steps, logging_steps=1, save_steps=10**9, eval_steps=10**9, resume=False
    )
    clock = StepClock(spec.batch_size * spec.grad_accum)
    with tempfile.TemporaryDirectory(prefix="mlx-rsi-estimate-") as tmp:
        backend.train(probe, dataset_dir, Path(tmp) / "run", clock)
    per_step = clock.seconds_per_step()
    if per_step is None or not math.isfinite(per_step):
        per_step = (time.perf_counter() - clock.began) / steps
    return Estimate(
        examples=examples,
        steps=planned_steps(spec, train, examples),
        trials=planned_trials(spec, train),
        seconds_per_step=per_step,
        setup_seconds=clock.setup_seconds(),
        peak_bytes=peak_rss_bytes(),
        measured_steps=max(len(clock.steps) - 1, 1),
    )


def from_clock(clock: StepClock, examples: int, trials: int) -> Estimate | None:
    """The estimate a running training's first steps give (``None`` before any step)."""
    per_step = clock.seconds_per_step()
    if per_step is None or not clock.total_steps:
        return None
    measured = clock.steps[-1][0] - (clock.steps[0][0] if len(clock.steps) >= 2 else 0)
    return Estimate(
        examples=examples,
        steps=clock.total_steps,
        trials=trials,
        seconds_per_step=per_step,
        setup_seconds=clock.setup_seconds(),
        peak_bytes=peak_rss_bytes(),
        measured_steps=measured,
    )


def estimate_cycle(
    ws: Workspace, cfg: Config, paths: list[Path] | None = None, *, steps: int = MEASURE_STEPS
) -> Estimate:
    """What the next cycle's training would cost: its dataset, measured (module doc).

    ``train.dataset`` names an existing dataset to measure; otherwise the sessions are
    ingested (as the cycle would) and curated without storing anything, and the train
    and valid splits are written to a temporary folder.
    """
    from backends.base import get_backend
    from mlx_rsi.modelpath import resolve_base_model
    from mlx_rsi.training import spec_from_config

    backend = get_backend(cfg.train.backend)
    model_dir = resolve_base_model(cfg.base_model, ws.root)
    spec = spec_from_config(cfg.train, model_dir)
    if cfg.train.dataset:
        from mlx_rsi.dataset import find_dataset

        return measure(backend, spec, cfg.train, find_dataset(ws, cfg.train.dataset), steps=steps)
    with tempfile.TemporaryDirectory(prefix="mlx-rsi-estimate-data-") as tmp:
        dataset_dir = _draft_dataset(ws, cfg, paths, Path(tmp))
        warm = (
            _warm_split(ws, cfg, spec, backend.name, dataset_dir) if cfg.train.warm_start else None
        )
        if warm is None:
            return measure(backend, spec, cfg.train, dataset_dir, steps=steps)
        spec = dataclasses.replace(spec, init_adapter=warm.adapter)
        estimate = measure(backend, spec, cfg.train, warm.folder, steps=steps)
        return dataclasses.replace(estimate, warm=warm.summary())


def _warm_split(
    ws: Workspace, cfg: Config, spec: TrainSpec, backend: str, dataset_dir: Path
) -> warmstart.WarmStart | None:
    """The split a warm start of the cycle would train on (written next to the draft)."""
    conn = ws.store()
    try:
        return warmstart.plan(
            ws, conn, cfg.train, spec, backend=backend, dataset_dir=dataset_dir,
            out_dir=dataset_dir,
        )  # fmt: skip
    finally:
        conn.close()


def _draft_dataset(ws: Workspace, cfg: Config, paths: list[Path] | None, folder: Path) -> Path:
    """train.jsonl / valid.jsonl as the cycle's dataset stage would split them."""
    from mlx_rsi.curate import curate
    from mlx_rsi.dataset import record_line, split_examples
    from mlx_rsi.errors import DatasetError
    from mlx_rsi.ingest import ingest

    ingest(ws, cfg, paths)
    examples = curate(ws, cfg, dry_run=True).examples
    if not any(e.origin == "session" for e in examples):
        raise DatasetError(
            "no high-quality examples from sessions to estimate training on",
            hint="ingest sessions first, or name a dataset with --dataset",
        )
    split = split_examples(examples, cfg, _carried(ws))
    for name, part in (("train", split.train), ("valid", split.valid)):
        (folder / f"{name}.jsonl").write_bytes(b"".join(record_line(e) for e in part))
    return folder


def _carried(ws: Workspace) -> tuple[list[bytes], list[str]] | None:
    """The newest dataset's test sessions: the next dataset keeps them out of training."""
    from mlx_rsi.dataset import list_datasets

    datasets = list_datasets(ws)
    if not datasets:
        return None
    newest = datasets[-1]
    sessions = list(newest.manifest.get("sessions", {}).get("test", []))
    test_file = newest.path / "test.jsonl"
    if not sessions or not test_file.is_file():
        return None
    return test_file.read_bytes().splitlines(keepends=True), sessions
