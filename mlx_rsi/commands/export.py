"""`mlx-rsi export`: write a version as MLX, HF safetensors, GGUF and an Ollama Modelfile."""

from __future__ import annotations

from pathlib import Path

import click

from mlx_rsi.artifact_formats import FORMATS
from mlx_rsi.commands import config_option, pass_app, writes_workspace
from mlx_rsi.context import AppContext
from mlx_rsi.ui import UI


@click.command()
@config_option
@click.argument("version", required=False)
@click.option(
    "--format",
    "formats",
    multiple=True,
    metavar="LIST",
    help=f"Comma-separated formats: {', '.join(FORMATS)}; 'gguf' = export.gguf_types "
    "(default: export.formats).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write here (empty or new folder) instead of models/VERSION/.",
)
@click.option("--force", is_flag=True, help="Replace outputs that exist.")
@pass_app
@writes_workspace(output="out")
def export(
    app: AppContext, version: str | None, formats: tuple[str, ...], out: Path | None, force: bool
) -> None:
    """Export VERSION (default: the current one; 'base': the base model).

    Every GGUF is loaded by llama.cpp and its greedy output compared with
    transformers' before it is kept (f16/bf16/q8_0 must match, a split being
    accepted only at a measured near-tie); MLX exports are loaded and run by
    mlx-lm, the HF export by transformers. Each folder gets a model card;
    'ollama' adds a Modelfile next to the GGUF.

    \b
    Example:
      mlx-rsi export v1.3 --format mlx-q4,gguf-q8_0,gguf-q4_k_m,ollama
    """
    from mlx_rsi.export import export_version

    ui = UI(app.quiet)
    with ui.progress("export", total=None) as bar:

        def progress(label: str, done: int, total: int) -> None:
            quarter = max(1, total // 4)  # off a terminal: a line per quarter, not per tensor
            status = f"{label} tensors" if done == total or done % quarter == 0 else ""
            bar.update(done, status, total=total)

        result = export_version(
            app.workspace,
            app.config(),
            version,
            list(formats) or None,
            out,
            report=ui.info,
            force=force,
            progress=progress,
        )
        bar.finish()
    rows = [(fmt, path) for fmt, path in result.artifacts.items()]
    ui.table(f"exported {result.version}", ["format", "path"], rows)
