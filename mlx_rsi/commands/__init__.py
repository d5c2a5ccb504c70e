"""One module per CLI command; shared option decorators live here."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from mlx_rsi.context import AppContext

F = TypeVar("F", bound=Callable[..., Any])

pass_app = click.make_pass_decorator(AppContext, ensure=True)


def _set_config(ctx: click.Context, _param: click.Parameter, value: Path | None) -> Path | None:
    if value is not None:
        ctx.ensure_object(AppContext).config_option = value
    return value


def config_option(func: F) -> F:
    """`--config` accepted after the subcommand too (`mlx-rsi train --config x.yaml`)."""
    decorated: F = click.option(
        "--config",
        "-c",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        callback=_set_config,
        expose_value=False,
        is_eager=True,
        help="Config YAML (overrides the workspace's mlx-rsi.yaml).",
    )(func)
    return decorated
