"""`mlx-rsi curate`: turn the stored sessions into training examples."""

from __future__ import annotations

import click

from mlx_rsi.commands import config_option, pass_app, writes_workspace
from mlx_rsi.context import AppContext
from mlx_rsi.ui import UI


@click.command()
@click.option("--dry-run", is_flag=True, help="Show what would be kept; store nothing.")
@config_option
@pass_app
@writes_workspace(unless="dry_run")
def curate(app: AppContext, dry_run: bool) -> None:
    """Score, categorize, filter and deduplicate the ingested sessions.

    Keeps the examples whose effectiveness score reaches `curate.threshold`
    (default 0.9: explicit successes and answers nobody complained about), drops
    exact and near duplicates, applies per-category caps, then adds template
    variations and identity examples. Prints the seed guide's summary: total
    interactions, high-quality examples, categories, and what was dropped and why.

    \b
    Examples:
      mlx-rsi curate --dry-run
      mlx-rsi curate && mlx-rsi dataset build
    """
    from mlx_rsi.curate import curate as run_curate

    ui = UI(app.quiet)
    result = run_curate(app.workspace, app.config(), dry_run=dry_run)
    ui.line(result.summary())
