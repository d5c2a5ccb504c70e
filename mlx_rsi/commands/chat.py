"""`mlx-rsi chat`: an interactive terminal chat that records whether each answer helped."""

from __future__ import annotations

import sys
from collections.abc import Callable

import click

from mlx_rsi.commands import pass_app
from mlx_rsi.context import AppContext
from mlx_rsi.ui import stdin_is_tty


@click.command()
@click.argument("version", required=False)
@click.option(
    "--engine",
    type=click.Choice(["auto", "transformers", "mlx", "gguf"]),
    default=None,
    help="Default serve.engine (auto: MLX on Apple silicon, else transformers).",
)
@click.option("--max-tokens", type=int, default=None, help="Answer length (serve.max_tokens).")
@click.option("--system", "system_prompt", default=None, help="A system message for the chat.")
@click.option(
    "--ask/--no-ask",
    default=None,
    help="Ask 'Was this helpful? (y/n)' after each answer (default: only on a terminal).",
)
@pass_app
def chat(
    app: AppContext,
    version: str | None,
    engine: str | None,
    max_tokens: int | None,
    system_prompt: str | None,
    ask: bool | None,
) -> None:
    """Chat with VERSION (default: the current one); /quit or Ctrl-D ends it.

    Each answer and your y/n rating are recorded under sessions/serve-<date>/,
    so the next `mlx-rsi train` learns from them.

    \b
    Example:
      mlx-rsi chat
      echo "How do I rotate a token?" | mlx-rsi chat v1.2 --no-ask
    """
    from mlx_rsi.serve.chat import ChatSession, run_chat
    from mlx_rsi.serve.engines import load_engine
    from mlx_rsi.serve.models import resolve_served
    from mlx_rsi.serve.server import recorder_for

    cfg = app.config()
    ws = app.workspace
    conn = ws.store()
    try:
        served = resolve_served(ws, conn, cfg, version, engine or cfg.serve.engine)
    finally:
        conn.close()
    interactive = stdin_is_tty()
    if interactive:
        click.echo(f"loading {served.version} ({served.engine}) …", err=True)
    session = ChatSession(
        engine=load_engine(
            served.engine, served.path, fallback_template=cfg.train.fallback_template
        ),
        version=served.version,
        recorder=recorder_for(ws, cfg),
        max_tokens=max_tokens or cfg.serve.max_tokens,
        system=system_prompt,
    )
    if interactive:
        click.echo("type /quit or press Ctrl-D to leave, /reset to forget the history", err=True)
    run_chat(session, _reader(interactive), _write, ask=interactive if ask is None else ask)
    if interactive:
        click.echo(f"{session.answered} answers recorded, {session.rated} rated", err=True)


def _reader(interactive: bool) -> Callable[[str], str]:
    def read(prompt: str) -> str:
        if interactive:
            return input(prompt)
        line = sys.stdin.readline()
        if not line:
            raise EOFError
        return line

    return read


def _write(text: str) -> None:
    click.echo(text, nl=False)
    sys.stdout.flush()
