"""`mlx-rsi versions`, `promote`, `rollback` and `diff`: the version registry by hand."""

from __future__ import annotations

import click

from mlx_rsi.commands import config_option, pass_app, writes_workspace
from mlx_rsi.context import AppContext
from mlx_rsi.ui import UI


@click.command()
@pass_app
def versions(app: AppContext) -> None:
    """List versions: parent, dataset, run, primary success, deltas, status.

    \b
    Example:
      mlx-rsi versions
    """
    from mlx_rsi.versions_view import version_rows

    ui = UI(app.quiet)
    conn = app.workspace.store()
    try:
        rows = version_rows(conn)
    finally:
        conn.close()
    if not rows:
        ui.line("no versions yet (`mlx-rsi train` makes the first)")
        return
    columns = [
        "version",
        "status",
        "parent",
        "dataset",
        "run",
        "success",
        "Δ success (CI)",
        "held-out loss (Δ)",
        "created",
    ]
    ui.table(
        "versions (* = current)",
        columns,
        [
            (
                f"{r.name}{' *' if r.current else ''}",
                r.status,
                r.parent,
                r.dataset,
                r.run,
                r.success,
                r.delta,
                r.loss,
                r.created,
            )
            for r in rows
        ],
    )


@click.command()
@config_option
@click.argument("version")
@click.option("--force", is_flag=True, help="Promote even though the gate rejected it.")
@pass_app
@writes_workspace
def promote(app: AppContext, version: str, force: bool) -> None:
    """Make VERSION current (fusing its adapter first when needed).

    \b
    Examples:
      mlx-rsi promote v1.3
      mlx-rsi promote v1.4 --force     # override the gate's rejection
    """
    from mlx_rsi.pointer import promote_version

    move = promote_version(app.workspace, app.config(), version, force=force)
    UI(app.quiet).line(move.summary("promote"))


@click.command()
@click.argument("version", required=False)
@pass_app
@writes_workspace
def rollback(app: AppContext, version: str | None) -> None:
    """Point current back at VERSION (default: the one current before). Keeps all artifacts.

    \b
    Examples:
      mlx-rsi rollback
      mlx-rsi rollback v1.1
    """
    from mlx_rsi.pointer import rollback as roll_back

    UI(app.quiet).line(roll_back(app.workspace, version).summary("rollback"))


@click.command()
@click.argument("first")
@click.argument("second")
@pass_app
def diff(app: AppContext, first: str, second: str) -> None:
    """Config, data and metric differences between versions FIRST and SECOND.

    \b
    Example:
      mlx-rsi diff v1.1 v1.2
    """
    from mlx_rsi.versions_view import diff_versions

    ui = UI(app.quiet)
    conn = app.workspace.store()
    try:
        changes = diff_versions(conn, first, second)
    finally:
        conn.close()
    for section, rows in changes.items():
        if rows:
            ui.table(f"{section}: {first} → {second}", ["key", first, second], rows)
        else:
            ui.line(f"{section}: no differences")
