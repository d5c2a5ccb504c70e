"""`mlx-rsi eval`: compare a version with another (or the base model) on the task suites."""

from __future__ import annotations

import json
from pathlib import Path

import click

from mlx_rsi.commands import config_option, pass_app
from mlx_rsi.context import AppContext
from mlx_rsi.ui import UI


@click.command("eval")
@config_option
@click.argument("version", required=False)
@click.option(
    "--against",
    default=None,
    help="Baseline: current, base or a version name (default: current; base for the current).",
)
@click.option(
    "--suite",
    "suites",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path, resolve_path=True),
    help="Suite file to run instead of the configured primary suites (repeatable).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_app
def eval_(
    app: AppContext,
    version: str | None,
    against: str | None,
    suites: tuple[Path, ...],
    as_json: bool,
) -> None:
    """Evaluate VERSION (default: current) against a baseline, greedily, on every suite.

    Prints success per suite and category with the paired bootstrap CI of the
    difference, and writes reports/VERSION.{json,md} with PNG plots.

    \b
    Examples:
      mlx-rsi eval                      # the current version against the base model
      mlx-rsi eval v1.3 --against v1.2
      mlx-rsi eval --suite my-tasks.yaml --against base
    """
    from mlx_rsi.eval.suites import load_suite

    for path in suites:  # schema errors before any model loads
        load_suite(path)
    from mlx_rsi.evaluate import run_eval

    ui = UI(app.quiet)
    report = run_eval(app.workspace, app.config(), version, against, list(suites))
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
        return
    from mlx_rsi.eval_view import render_report

    render_report(ui, report, app.workspace.reports_dir)
