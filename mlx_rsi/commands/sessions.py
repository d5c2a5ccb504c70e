"""`mlx-rsi sessions list|show`: what ingest stored, with the outcome signals."""

from __future__ import annotations

import json

import click

from mlx_rsi.commands import config_option, pass_app
from mlx_rsi.context import AppContext
from mlx_rsi.records import Message, Session
from mlx_rsi.ui import UI

SIGNAL_STYLE = {
    "feedback": "cyan",
    "tool_error": "red",
    "tool_success": "green",
    "rejection": "magenta",
    "interrupt": "yellow",
    "correction": "yellow",
    "api_error": "red",
}


@click.group()
def sessions() -> None:
    """List and inspect ingested sessions."""


@sessions.command("list")
@click.option("--format", "fmt", metavar="FORMAT", help="Only sessions of this format.")
@click.option("--limit", default=50, show_default=True, help="Newest N sessions (0 = all).")
@config_option
@pass_app
def list_command(app: AppContext, fmt: str | None, limit: int) -> None:
    """Show the newest sessions: id, format, start, title, interactions, answers, signals.

    \b
    Example:
      mlx-rsi sessions list --format claude_code --limit 20
    """
    from mlx_rsi.session_store import session_summaries

    with app.workspace.store() as conn:
        rows = session_summaries(conn, fmt=fmt, limit=limit or None)
    ui = UI(app.quiet)
    table = [
        (
            row.id[:12],
            row.source_format,
            (row.started_at or "")[:19],
            _shorten(row.title or row.project or "", 40),
            row.interactions,
            row.answers,
            _signals_text(row.signals),
        )
        for row in rows
    ]
    headers = ["id", "format", "started", "title", "interactions", "answers", "signals"]
    ui.table(f"{len(rows)} sessions", headers, table)


@sessions.command("show")
@click.argument("session_id")
@click.option("--full", is_flag=True, help="Do not shorten long texts and tool outputs.")
@config_option
@pass_app
def show_command(app: AppContext, session_id: str, full: bool) -> None:
    """Show one session's transcript; SESSION_ID may be a unique prefix.

    \b
    Example:
      mlx-rsi sessions show 3fa2c1
    """
    from mlx_rsi.names import check_name
    from mlx_rsi.session_store import find_session, load_sessions

    check_name(session_id, "session id prefix")
    with app.workspace.store() as conn:
        (session,) = load_sessions(conn, ids=[find_session(conn, session_id)])
    ui = UI(app.quiet)
    if not ui.quiet:
        render_transcript(ui, session, None if full else 600)


def render_transcript(ui: UI, session: Session, limit: int | None) -> None:
    from rich.markup import escape

    head = f"[bold]{session.id}[/] {session.source_format} {escape(session.path)}"
    ui.out.print(head)
    if session.project or session.title:
        ui.out.print(escape(" · ".join(x for x in (session.title, session.project) if x)))
    if session.parent_id:
        ui.out.print(f"sidechain of {session.parent_id}")
    for index, message in enumerate(session.messages):
        ui.out.print(_header(index, message))
        for line in _body(message, limit):
            ui.out.print(escape(line))


def _header(index: int, message: Message) -> str:
    from rich.markup import escape

    parts = [f"\n[bold]#{index} {message.role}[/]"]
    if message.name:
        parts.append(escape(message.name))
    if not message.typed:
        parts.append("[dim](not typed)[/]")
    if message.is_error:
        parts.append("[red](error)[/]")
    if message.timestamp:
        parts.append(f"[dim]{escape(message.timestamp)}[/]")
    for signal in message.signals:
        style = SIGNAL_STYLE.get(signal.kind, "bold")
        value = "" if signal.value in (True, None) else f"={signal.value}"
        detail = f": {escape(signal.detail)}" if signal.detail else ""
        parts.append(f"[{style}]⚑ {signal.kind}{value}{detail}[/]")
    return " ".join(parts)


def _body(message: Message, limit: int | None) -> list[str]:
    lines = []
    if message.reasoning:
        lines.append(f"(thinking, {len(message.reasoning)} chars)")
    if message.text:
        lines.append(_shorten(message.text, limit))
    for call in message.tool_calls:
        arguments = json.dumps(call.arguments, ensure_ascii=False)
        lines.append(f"→ {call.name}({_shorten(arguments, limit and limit // 2)}) [{call.id}]")
    if message.tool_call_id:
        lines.append(f"← result of {message.tool_call_id}")
    return lines


def _shorten(text: str, limit: int | None) -> str:
    if limit is None or len(text) <= limit:
        return text
    return text[:limit] + f"… ({len(text) - limit} more chars)"


def _signals_text(signals: dict[str, int]) -> str:
    return ", ".join(f"{kind} {count}" for kind, count in sorted(signals.items()))
