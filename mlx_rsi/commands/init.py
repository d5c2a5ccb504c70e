"""`mlx-rsi init`: create a workspace with a commented config holding every default."""

from __future__ import annotations

from importlib import resources

import click

from mlx_rsi import atomic
from mlx_rsi.commands import pass_app, writes_workspace
from mlx_rsi.context import AppContext
from mlx_rsi.errors import UsageError
from mlx_rsi.ui import UI, stdin_is_tty


def default_config_text() -> str:
    return resources.files("mlx_rsi").joinpath("data/default.yaml").read_text(encoding="utf-8")


@click.command()
@click.option("--base-model", help="Base model: a local HF folder or 'gemma3-270m' (default).")
@click.option(
    "--standard-sources/--no-standard-sources",
    default=None,
    help="Also watch the assistants' standard log folders (~/.claude/projects, "
    "~/.codex/sessions, ~/.gemini/tmp). Asked on a terminal; off otherwise.",
)
@click.option("--force", is_flag=True, help="Overwrite an existing mlx-rsi.yaml.")
@pass_app
@writes_workspace(creates=True)
def init(
    app: AppContext, base_model: str | None, standard_sources: bool | None, force: bool
) -> None:
    """Create the workspace folders, the state store and a commented mlx-rsi.yaml.

    \b
    Example:
      mlx-rsi --workspace ~/rsi init --standard-sources
    """
    ws = app.workspace
    ui = UI(app.quiet)
    if ws.config_path.exists() and not force:
        ws.create()
        ui.line(
            f"workspace ready at {ws.root} "
            f"(kept existing {ws.config_path.name}; --force rewrites it)"
        )
        return
    if standard_sources is None:
        standard_sources = stdin_is_tty() and click.confirm(
            "Watch the standard Claude Code / Codex / Gemini CLI log folders?", default=False
        )
    text = render_config(base_model, standard_sources)
    ws.create()
    atomic.write_text(ws.config_path, text)
    ui.line(f"workspace created at {ws.root}; edit {ws.config_path} then run `mlx-rsi train`")


def render_config(base_model: str | None, standard_sources: bool) -> str:
    text = default_config_text()
    if base_model:
        if "\n" in base_model:
            raise UsageError("--base-model must be a single line")
        text = text.replace("  base: gemma3-270m\n", f"  base: {_yaml_scalar(base_model)}\n", 1)
    if standard_sources:
        text = text.replace("    # <<< watch\n", _standard_watch_entries() + "    # <<< watch\n", 1)
    return text


def _standard_watch_entries() -> str:
    from mlx_rsi.ingest import standard_locations

    lines = []
    for folder in standard_locations():
        lines += [
            f"    - path: {_yaml_scalar(folder.path)}",
            f"      format: {folder.format}",
            "      include: []",
            "      exclude: []",
        ]
    return "\n".join(lines) + "\n"


def _yaml_scalar(value: str) -> str:
    import json

    return json.dumps(value)
