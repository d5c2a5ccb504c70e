"""One module per CLI command; shared option decorators live here.

A command that writes to the workspace declares it with :func:`writes_workspace`
(below ``@pass_app``): it then runs under the workspace lock, and a second writer
exits with one line naming the holder. Commands without it are readers and run
while a cycle does. A full or read-only disk met while writing becomes one line
naming the place (``errors.storage_errors``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from mlx_rsi.context import AppContext
from mlx_rsi.errors import storage_errors

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


def writes_workspace(
    func: F | None = None,
    *,
    creates: bool = False,
    output: str | None = None,
    unless: str | None = None,
) -> Any:
    """Run the command under the workspace lock.

    ``creates``: the command may create the workspace (init, train). ``output``:
    the parameter holding the path the command writes; the lock is taken only when
    that path lies inside the workspace (an export elsewhere reads only).
    ``unless``: a flag parameter that makes the run read-only (``dry_run``).
    """

    def decorate(command: F) -> F:
        @functools.wraps(command)
        def wrapper(app: AppContext, *args: Any, **kwargs: Any) -> Any:
            root = app.workspace.root
            target = kwargs.get(output) if output else None
            read_only = bool(unless and kwargs.get(unless))
            if read_only or (output and not _inside(target, root)):
                with storage_errors(target or root):
                    return command(app, *args, **kwargs)
            name = click.get_current_context().command_path
            with storage_errors(root), app.writing(name, creates=creates):
                return command(app, *args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate(func) if func is not None else decorate


def _inside(path: Path | None, root: Path) -> bool:
    if path is None:
        return False
    return Path(path).expanduser().resolve().is_relative_to(root.resolve())
