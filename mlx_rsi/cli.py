"""The `mlx-rsi` command line: a lazy click group over one module per command.

Each command parses its flags, calls one stage function, and renders the result.
Subcommands are imported only when run, so `mlx-rsi --help` and `--version`
never import mlx or torch. ``main`` maps the MlxRsiError family to one line and
an exit code; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import importlib
import logging
import sys
from pathlib import Path
from typing import Any

import click

from mlx_rsi import __version__
from mlx_rsi.context import AppContext
from mlx_rsi.errors import MlxRsiError, storage_error

# command name -> "module:function"; each module lives in mlx_rsi/commands/.
COMMANDS: dict[str, str] = {
    "ab": "mlx_rsi.commands.ab:ab",
    "adapter": "mlx_rsi.commands.adapter:adapter",
    "chat": "mlx_rsi.commands.chat:chat",
    "run-tasks": "mlx_rsi.commands.run_tasks:run_tasks",
    "serve": "mlx_rsi.commands.serve:serve",
    "init": "mlx_rsi.commands.init:init",
    "status": "mlx_rsi.commands.status:status",
    "doctor": "mlx_rsi.commands.doctor:doctor",
    "train": "mlx_rsi.commands.train:train",
    "watch": "mlx_rsi.commands.watch:watch",
    "curate": "mlx_rsi.commands.curate:curate",
    "dataset": "mlx_rsi.commands.dataset:dataset",
    "eval": "mlx_rsi.commands.eval:eval_",
    "versions": "mlx_rsi.commands.versions:versions",
    "promote": "mlx_rsi.commands.versions:promote",
    "rollback": "mlx_rsi.commands.versions:rollback",
    "diff": "mlx_rsi.commands.versions:diff",
    "ingest": "mlx_rsi.commands.ingest:ingest",
    "sessions": "mlx_rsi.commands.sessions:sessions",
    "export": "mlx_rsi.commands.export:export",
    "publish": "mlx_rsi.commands.publish:publish",
}


class LazyGroup(click.Group):
    """Imports a subcommand's module only when that subcommand is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        command: click.Command = getattr(importlib.import_module(module_name), attribute)
        return command

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0] if args else ""
        if name and not name.startswith("-") and name not in COMMANDS:
            import difflib

            close = difflib.get_close_matches(name, list(COMMANDS), n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            ctx.fail(f"No such command '{name}'.{hint}")
        return super().resolve_command(ctx, args)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="mlx-rsi")
@click.option(
    "--workspace",
    "-w",
    type=click.Path(file_okay=False, path_type=Path),
    help="Workspace folder (default: $MLX_RSI_HOME or ./rsi-workspace).",
)
@click.option(
    "--config",
    "-c",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Config YAML (default: <workspace>/mlx-rsi.yaml when it exists).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or summaries, errors only.")
@click.pass_context
def cli(
    ctx: click.Context,
    workspace: Path | None,
    config_path: Path | None,
    debug: bool,
    verbose: int,
    quiet: bool,
) -> None:
    """mlx-rsi: your own work sessions make your model better, on your own machine.

    The loop: ingest session logs -> curate examples -> train a LoRA adapter ->
    evaluate against the current version -> promote -> export.
    """
    ctx.obj = AppContext(
        workspace_option=workspace,
        config_option=config_path,
        debug=debug,
        verbose=verbose,
        quiet=quiet,
    )
    _configure_logging(debug, verbose, quiet)


def _configure_logging(debug: bool, verbose: int, quiet: bool) -> None:
    level = logging.WARNING
    if verbose == 1:
        level = logging.INFO
    if debug or verbose >= 2:
        level = logging.DEBUG
    if quiet:
        level = logging.ERROR
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", force=True)


def main(argv: list[str] | None = None) -> Any:
    """Console entry point: one line per known error, exit codes, no tracebacks."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        return cli.main(args=args, prog_name="mlx-rsi", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except MlxRsiError as e:
        if debug:
            raise
        click.echo(f"error: {e.one_line()}", err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        if debug:
            raise
        click.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as e:  # a full or read-only disk still reads as one line
        mapped = storage_error(e)
        if debug or mapped is None:
            raise
        click.echo(f"error: {mapped.one_line()}", err=True)
        sys.exit(mapped.exit_code)
