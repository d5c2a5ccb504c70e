"""`mlx-rsi train`: one improvement cycle by hand."""

from __future__ import annotations

from pathlib import Path

import click

from backends.base import TrainEvent
from mlx_rsi.commands import config_option, pass_app, writes_workspace
from mlx_rsi.config import with_overrides
from mlx_rsi.context import AppContext
from mlx_rsi.cycle import run_cycle
from mlx_rsi.ui import UI


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
    paths: tuple[Path, ...],
) -> None:
    """Run one cycle: ingest, curate, build dataset vX.Y, train, evaluate, promote, fuse.

    PATHS (optional) are session-log files or folders to ingest in addition to
    the configured sources.

    \b
    Example:
      mlx-rsi train --config configs/recursive_v1.1.yaml --model ./base-model
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
    with ui.progress("training", total=None) as bar:

        def on_event(event: TrainEvent) -> None:
            if event.kind in ("step", "eval", "end"):
                bar.update(event.step, _status(event), total=event.total_steps or None)
            if event.kind == "end":
                bar.finish()
            elif event.kind == "save":
                ui.info(f"  checkpoint at step {event.step}: {event.message}")
            elif event.kind == "stop":
                ui.info(f"  early stop at step {event.step}: {event.message}")

        result = run_cycle(
            ws,
            cfg,
            report=ui.line,
            on_train_event=on_event,
            fresh=fresh,
            ingest_paths=list(paths) or None,
        )
    if result.promoted:
        ui.line(f"cycle {result.version}: promoted; fused model in {result.artifacts['hf']}")
    else:
        report = ws.reports_dir / f"{result.version}.md"
        ui.line(f"cycle {result.version}: not promoted; see {report}")


def _status(event: TrainEvent) -> str:
    parts = []
    if event.loss is not None:
        parts.append(f"loss {event.loss:.3f}")
    if event.val_loss is not None:
        parts.append(f"val {event.val_loss:.3f}")
    if event.tokens_per_second:
        parts.append(f"{event.tokens_per_second:.0f} tok/s")
    return " ".join(parts)
