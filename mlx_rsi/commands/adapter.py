"""`mlx-rsi adapter convert`: move an adapter between the MLX and PEFT layouts."""

from __future__ import annotations

from pathlib import Path

import click

from mlx_rsi import atomic
from mlx_rsi.commands import config_option, pass_app, writes_workspace
from mlx_rsi.context import AppContext
from mlx_rsi.modelpath import resolve_base_model
from mlx_rsi.ui import UI


@click.group()
def adapter() -> None:
    """LoRA adapters: convert between the MLX (mlx-lm) and PEFT layouts."""


@adapter.command()
@config_option
@click.argument("src", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("dst", type=click.Path(path_type=Path))
@click.option(
    "--to",
    "layout",
    type=click.Choice(["mlx", "peft"]),
    required=True,
    help="Layout to write.",
)
@click.option("--base", "base", help="Base model the adapter belongs to (default: model.base).")
@click.option("--force", is_flag=True, help="Replace DST if it exists.")
@pass_app
@writes_workspace(output="dst")
def convert(
    app: AppContext, src: Path, dst: Path, layout: str, base: str | None, force: bool
) -> None:
    """Convert the adapter in SRC to LAYOUT and write it to DST.

    The result gives the same logits as the original (checked in the tests): an
    adapter trained on a CUDA box with PEFT runs on a Mac with MLX, and back.

    \b
    Example:
      mlx-rsi adapter convert runs/v1.1-ab12cd/adapter ./adapter-peft --to peft
    """
    from backends.convert import convert_adapter

    if atomic.occupied(dst) and not force:
        raise click.UsageError(f"{dst} exists and is not empty; pass --force to replace it")
    base_dir = resolve_base_model(base or app.config().base_model, app.workspace.root)
    convert_adapter(src, dst, to=layout, base_model_dir=base_dir, replace=force)
    UI(app.quiet).line(f"adapter converted to {layout}: {dst}")
