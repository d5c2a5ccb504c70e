"""`mlx-rsi doctor`: what this machine can do, which backend `auto` picks, workspace health."""

from __future__ import annotations

import json
import sys

import click

from mlx_rsi.commands import pass_app
from mlx_rsi.config import to_plain
from mlx_rsi.context import AppContext
from mlx_rsi.doctor import DoctorReport, diagnose
from mlx_rsi.ui import UI


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_app
def doctor(app: AppContext, as_json: bool) -> None:
    """Report Python, platform, accelerator, package versions, backends and workspace health.

    Exits 1 when the workspace has problems.

    \b
    Example:
      mlx-rsi doctor
    """
    report = diagnose(app.workspace)
    if as_json:
        click.echo(json.dumps(to_plain(report), indent=2))
    else:
        _render(UI(app.quiet), report)
    if report.problems:
        sys.exit(1)


def _render(ui: UI, r: DoctorReport) -> None:
    ui.line(f"python       {r.python}")
    ui.line(f"platform     {r.platform}")
    ui.line(f"accelerator  {r.accelerator}")
    rows = [(name, version or "not installed") for name, version in r.packages.items()]
    ui.table("packages", ["package", "version"], rows)
    backend_rows = [(name, "yes" if ok else "no", why) for name, (ok, why) in r.backends.items()]
    ui.table("backends", ["backend", "available", "why"], backend_rows)
    ui.line(f"auto backend {r.auto_backend}: {r.auto_reason}")
    ui.table("base models (model.base)", ["name", "model", "status"], r.base_models)
    ui.line(f"workspace    {r.workspace}: {r.workspace_health}")
    for problem in r.problems:
        ui.line(f"problem      {problem}")
