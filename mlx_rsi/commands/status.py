"""`mlx-rsi status`: what the workspace holds."""

from __future__ import annotations

import json

import click

from mlx_rsi.commands import pass_app
from mlx_rsi.config import to_plain
from mlx_rsi.context import AppContext
from mlx_rsi.status import workspace_status
from mlx_rsi.ui import UI


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_app
def status(app: AppContext, as_json: bool) -> None:
    """Show counts of files, sessions, examples, datasets, runs and versions.

    \b
    Example:
      mlx-rsi status
    """
    report = workspace_status(app.workspace)
    ui = UI(app.quiet)
    if as_json:
        click.echo(json.dumps(to_plain(report), indent=2))
        return
    ui.line(f"workspace {report.root} (schema v{report.schema_version})")
    ui.line(f"current version: {report.current_version or 'base (none promoted yet)'}")
    ui.line(f"latest dataset: {report.latest_dataset or '-'}")
    ui.table("contents", ["what", "count"], sorted(report.counts.items()))
    if report.running:
        ui.line(f"running: {report.running}")
    if report.unfinished_cycle:
        cycle = report.unfinished_cycle
        done = ", ".join(cycle["completed"]) or "nothing yet"
        ui.line(
            f"unfinished cycle {cycle['version'] or cycle['id']} (done: {done}); "
            "the next `mlx-rsi train` finishes it, `train --fresh` abandons it"
        )
    if report.interrupted_runs:
        ui.line(
            f"interrupted runs (resumed by the next `train`): {', '.join(report.interrupted_runs)}"
        )
    _last_cycle(app, ui)
    if report.recent_events:
        rows = [  # whole summaries (rich wraps them): the numbers are at their ends
            (e["finished_at"] or "", e["stage"], e["status"], e["summary"] or "")
            for e in report.recent_events
        ]
        ui.table("recent stages", ["finished", "stage", "status", "summary"], rows)


def _last_cycle(app: AppContext, ui: UI) -> None:
    """The seed's expected-results table for the latest cycle (mlx_rsi/versions_view.py)."""
    from mlx_rsi.versions_view import last_cycle

    conn = app.workspace.store()
    try:
        rows = last_cycle(conn)
    finally:
        conn.close()
    if rows:
        ui.table("last cycle", ["result", "value"], rows)
