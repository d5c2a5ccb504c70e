"""`mlx-rsi ingest`: read session logs into the workspace's state store."""

from __future__ import annotations

from pathlib import Path

import click

from mlx_rsi.commands import config_option, pass_app, writes_workspace
from mlx_rsi.context import AppContext
from mlx_rsi.sources import format_names
from mlx_rsi.ui import UI

# Files listed with their skip reasons after the summary.
MAX_SKIPPED_ROWS = 30


@click.command()
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--format",
    "fmt",
    metavar="FORMAT",
    help=f"Read every file as this format instead of detecting it: {', '.join(format_names())}.",
)
@click.option("--dry-run", is_flag=True, help="Read and count, but store nothing.")
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="One line per file read or skipped: the format detected and what it held.",
)
@config_option
@pass_app
@writes_workspace(unless="dry_run")
def ingest(
    app: AppContext, paths: tuple[Path, ...], fmt: str | None, dry_run: bool, verbose: bool
) -> None:
    """Ingest session logs from PATHS (files or folders, recursive).

    Without PATHS, the watched folders of the config's `sources.watch` are read.
    Only new data is read: unchanged files are skipped, appended files are read
    from where the last pass stopped, rewritten files are read again without
    duplicating anything. Secrets are redacted before anything is stored.

    Counts: a *prompt* is a message the person typed; an *interaction* is a
    prompt with everything the assistant did for it (the unit `curate` turns
    into an example); an *answer* is one assistant message.

    \b
    Examples:
      mlx-rsi ingest ~/.claude/projects
      mlx-rsi ingest conversations.json --format chatgpt
      mlx-rsi ingest ./logs --dry-run
      mlx-rsi ingest ./logs -v
    """
    from mlx_rsi.ingest import ingest as run_ingest

    ui = UI(app.quiet)
    with ui.progress("ingest", None) as task:
        result = run_ingest(
            app.workspace,
            app.config(),
            list(paths) if paths else None,
            fmt=fmt,
            dry_run=dry_run,
            on_progress=lambda done, total, _path: task.update(done, total=total),
        )
    ui.line(result.summary())
    if verbose:
        for outcome in result.outcomes:
            ui.line(f"  {outcome.describe()}")
        return
    skipped = sorted(result.skipped.items())
    for path, reasons in skipped[:MAX_SKIPPED_ROWS]:
        ui.line(f"  skipped in {path}: {_reasons(reasons)}")
    if len(skipped) > MAX_SKIPPED_ROWS:
        ui.line(f"  … and {len(skipped) - MAX_SKIPPED_ROWS} more files with skips")


def _reasons(reasons: dict[str, int]) -> str:
    return ", ".join(f"{reason} {count}" for reason, count in sorted(reasons.items()))
