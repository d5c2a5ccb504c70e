"""`mlx-rsi publish`: push an exported version to the Hugging Face Hub."""

from __future__ import annotations

import click

from mlx_rsi.commands import config_option, pass_app
from mlx_rsi.context import AppContext
from mlx_rsi.ui import UI


@click.command()
@config_option
@click.argument("version", required=False)
@click.option("--repo", "repo_id", metavar="ORG/NAME", help="Hub repo (default: publish.repo_id).")
@click.option("--private/--public", "private", default=None, help="Repo visibility on creation.")
@click.option(
    "--formats",
    "formats",
    multiple=True,
    metavar="LIST",
    help="Comma-separated exported formats to upload (default: publish.formats, else all).",
)
@click.option("--dry-run", is_flag=True, help="List exactly what would be uploaded, with sizes.")
@click.option("--force", is_flag=True, help="Publish even a version whose gate failed.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_app
def publish(
    app: AppContext,
    version: str | None,
    repo_id: str | None,
    private: bool | None,
    formats: tuple[str, ...],
    dry_run: bool,
    force: bool,
    as_json: bool,
) -> None:
    """Upload VERSION (default: the current one) to the Hub and tag it.

    The token is read from HF_TOKEN or the Hugging Face login (`hf auth login`),
    never from the command line, and is never printed. All formats go up in one
    commit; a failed upload leaves the repo as it was.

    \b
    Example:
      mlx-rsi publish v1.3 --repo me/my-assistant --formats hf,gguf-q4_k_m --dry-run
    """
    from mlx_rsi.publish import dry_run_rows, publish_version, result_json

    ui = UI(app.quiet or as_json)
    result = publish_version(
        app.workspace,
        app.config(),
        version,
        repo_id=repo_id,
        private=private,
        formats=list(formats) or None,
        dry_run=dry_run,
        force=force,
        report=ui.info,
    )
    if as_json:
        click.echo(result_json(result))
        return
    if dry_run:
        ui.table("would upload", ["repo", "file", "size"], dry_run_rows(result))
    ui.line(result.summary())
