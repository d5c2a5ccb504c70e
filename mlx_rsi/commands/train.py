"""`mlx-rsi train`: one improvement cycle by hand."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import click

from backends.base import TrainEvent
from mlx_rsi.commands import config_option, pass_app, writes_workspace
from mlx_rsi.config import Config, with_overrides
from mlx_rsi.context import AppContext
from mlx_rsi.cycle import run_cycle
from mlx_rsi.estimate import Estimate, StepClock, estimate_cycle, format_minutes, from_clock
from mlx_rsi.ui import UI, ProgressTask
from mlx_rsi.workspace import Workspace


@click.command()
@config_option
@click.option(
    "--backend",
    type=click.Choice(["auto", "mlx", "peft"]),
    help="Training backend (default: train.backend, usually auto).",
)
@click.option("--model", "model", help="Base model folder (overrides model.base).")
@click.option("--dataset", help="Train on this dataset version or folder instead of curating.")
@click.option("--max-steps", type=click.IntRange(min=1), help="Stop after this many steps.")
@click.option("--epochs", type=click.FloatRange(min=0, min_open=True), help="Epochs to train.")
@click.option(
    "--fresh",
    is_flag=True,
    help="Abandon an interrupted cycle instead of resuming it.",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Resume the interrupted cycle (the default when one exists; kept for clarity).",
)
@click.option(
    "--estimate",
    is_flag=True,
    help="Only estimate training time and peak memory from a few measured steps.",
)
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@pass_app
@writes_workspace(creates=True)
def train(
    app: AppContext,
    backend: str | None,
    model: str | None,
    dataset: str | None,
    max_steps: int | None,
    epochs: float | None,
    fresh: bool,
    resume: bool,
    estimate: bool,
    paths: tuple[Path, ...],
) -> None:
    """Run one cycle: ingest, curate, build dataset vX.Y, train, evaluate, promote, fuse.

    PATHS (optional) are session-log files or folders to ingest in addition to
    the configured sources.

    \b
    Examples:
      mlx-rsi train --config configs/recursive_v1.1.yaml --model ./base-model
      mlx-rsi train --estimate      # time and peak memory, from a few measured steps
    """
    if fresh and resume:
        raise click.UsageError("--fresh and --resume contradict each other")
    cfg = with_overrides(
        app.config(),
        "train",
        backend=backend,
        model_name_or_path=model,
        dataset=dataset,
        max_steps=max_steps,
        num_train_epochs=epochs,
    )
    ws = app.workspace
    if not ws.exists():
        ws.create()
    ui = UI(app.quiet)
    if estimate:
        _estimate_only(ui, ws, cfg, list(paths) or None)
        return
    timer = TrainingTimer(ui, cfg)
    with StageBars(ui) as bars:

        def on_event(event: TrainEvent) -> None:
            timer(event)
            if event.kind in ("step", "eval", "end"):
                bars.training(event.step, _status(event), event.total_steps or None)
            elif event.kind == "save":
                ui.info(f"  checkpoint at step {event.step}: {event.message}")
            elif event.kind == "stop":
                ui.info(f"  early stop at step {event.step}: {event.message}")

        result = run_cycle(
            ws,
            cfg,
            report=bars.report,
            on_train_event=on_event,
            fresh=fresh,
            ingest_paths=list(paths) or None,
        )
    timer.report_actual()
    if result.promoted:
        ui.line(f"cycle {result.version}: promoted; fused model in {result.artifacts['hf']}")
    else:
        report = ws.reports_dir / f"{result.version}.md"
        ui.line(f"cycle {result.version}: not promoted; see {report}")


# A stage's summary line (its first word) -> what runs next, shown with a live bar.
NEXT = {
    "ingested": "curating",
    "curate:": "building the dataset",
    "dataset": "training",
    "train:": "evaluating both models on the suites",
    "evaluate:": "fusing the adapter",
    "promote:": "exporting",
}


class StageBars:
    """One live bar per long stage of the cycle: the training steps, elapsed time else.

    The cycle reports one line per finished stage; the bar of the stage that follows
    runs until the next line (or the end of the cycle).
    """

    def __init__(self, ui: UI) -> None:
        self.ui = ui
        self.stack = contextlib.ExitStack()
        self.bar: ProgressTask | None = None
        self.phase = ""

    def __enter__(self) -> StageBars:
        self._start("ingesting")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop()

    def report(self, line: str) -> None:
        self._stop()
        self.ui.line(line)
        following = NEXT.get(line.split(" ", 1)[0])
        if following:
            self._start(following)

    def training(self, step: int, status: str, total: int | None) -> None:
        if self.phase != "training":
            self._stop()
            self._start("training")
        if self.bar is not None:
            self.bar.update(step, status, total=total)

    def _start(self, phase: str) -> None:
        self.phase = phase
        self.stack = contextlib.ExitStack()
        self.bar = self.stack.enter_context(self.ui.progress(phase, total=None))

    def _stop(self) -> None:
        if self.bar is not None:
            self.bar.finish()
        self.stack.close()
        self.bar, self.phase = None, ""


def _estimate_only(ui: UI, ws: Workspace, cfg: Config, paths: list[Path] | None) -> None:
    with ui.progress("estimate: training a few steps", total=None) as bar:
        result = estimate_cycle(ws, cfg, paths)
        bar.finish()
    ui.line(result.describe())


class TrainingTimer:
    """The cycle's estimate from its run's first steps, then the actual training time."""

    def __init__(self, ui: UI, cfg: Config) -> None:
        self.ui, self.cfg = ui, cfg
        self.clock: StepClock | None = None
        self.examples = 0
        self.estimate: Estimate | None = None
        self.first_start: float | None = None
        self.last_end: float | None = None

    def __call__(self, event: TrainEvent) -> None:
        now = time.perf_counter()
        if event.kind == "start":
            self.first_start = self.first_start or now
            self.examples = int(event.extra.get("examples") or self.examples)
            if self.clock is None:
                train = self.cfg.train
                self.clock = StepClock(
                    train.per_device_train_batch_size * train.gradient_accumulation_steps
                )
                # The clock takes the start time and the split's token counts from this
                # event below (setting ``started`` here made it skip them: no scaling).
                self.clock.began = now
        if self.clock is None or self.estimate is not None:
            self.last_end = now if event.kind == "end" else self.last_end
            return
        self.clock(event)
        if event.kind == "step":
            trials = 3 if self.cfg.train.auto and self.cfg.train.max_steps is None else 1
            self.estimate = from_clock(self.clock, self.examples, trials)
            if self.estimate is not None:
                self.ui.info(f"  {self.estimate.describe()}")

    def report_actual(self) -> None:
        if self.estimate is None or self.first_start is None or self.last_end is None:
            return
        actual = self.last_end - self.first_start
        self.ui.line(
            f"train: took {format_minutes(actual)} (estimated "
            f"{format_minutes(self.estimate.seconds)} after its first "
            f"{self.estimate.measured_steps} steps)"
        )


def _status(event: TrainEvent) -> str:
    parts = []
    if event.loss is not None:
        parts.append(f"loss {event.loss:.3f}")
    if event.val_loss is not None:
        parts.append(f"val {event.val_loss:.3f}")
    if event.tokens_per_second:
        parts.append(f"{event.tokens_per_second:.0f} tok/s")
    return " ".join(parts)
