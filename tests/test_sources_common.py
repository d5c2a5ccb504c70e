"""Format detection by content, the registry, and helpers shared by the reader tests."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from mlx_rsi.config import Config
from mlx_rsi.errors import UsageError
from mlx_rsi.ingest import ingest
from mlx_rsi.records import Message, Session
from mlx_rsi.session_store import load_sessions
from mlx_rsi.sources import REGISTRY, detect_format, format_names, get_reader
from mlx_rsi.workspace import Workspace

FIXTURES = Path(__file__).parent / "fixtures" / "sources"
CLAUDE = FIXTURES / "claude_code" / "-home-alice-proj" / "0b7e4c2a-session.jsonl"
CLAUDE_AGENT = (
    FIXTURES / "claude_code" / "-home-alice-proj" / "0b7e4c2a-session" / "subagents"
) / "agent-a1b2c3.jsonl"
CODEX = FIXTURES / "codex" / "2025" / "09" / "01" / "rollout-2025-09-01T10-00-00-0199a1b2.jsonl"
AIDER = FIXTURES / "aider" / "repo" / ".aider.chat.history.md"
GEMINI_CHATS = FIXTURES / "gemini" / "9f86d081" / "chats"
GEMINI_JSON = GEMINI_CHATS / "session-2025-06-04T10-00-abcd1234.json"
GEMINI_JSONL = GEMINI_CHATS / "session-2025-06-05T09-00-ef567890.jsonl"
GEMINI_SUB = GEMINI_CHATS / "ef567890-aaaa-bbbb-cccc-ddddeeeeffff" / "7c1d2e3f.jsonl"
CHATGPT = FIXTURES / "chatgpt" / "conversations.json"
GENERIC = FIXTURES / "generic"


def row(message: Message, width: int = 60) -> tuple[Any, ...]:
    """A message as a compact comparable tuple (text cut to ``width``)."""
    return (
        message.key,
        message.role,
        message.typed,
        message.text[:width],
        [(c.id, c.name) for c in message.tool_calls],
        message.tool_call_id,
        message.is_error,
        [(s.kind, s.value, s.detail) for s in message.signals],
    )


def by_native(sessions: list[Session]) -> dict[str, Session]:
    return {s.native_id: s for s in sessions}


def snapshot(ws: Workspace) -> list[dict[str, Any]]:
    with ws.store() as conn:
        return [s.to_dict() for s in load_sessions(conn)]


def ingest_in_steps(tmp_path: Path, data: bytes, name: str, cuts: list[int]) -> list[Any]:
    """Write ``data`` to ``name`` in pieces (ingesting after each) and return the store."""
    ws = Workspace(tmp_path / f"ws-steps-{len(list(tmp_path.iterdir()))}")
    ws.create()
    target = tmp_path / "logs" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"")
    written = 0
    for cut in [*cuts, len(data)]:
        with target.open("ab") as handle:
            handle.write(data[written:cut])
        written = cut
        ingest(ws, Config(), [target])
    return snapshot(ws)


def ingest_once(tmp_path: Path, name: str) -> list[Any]:
    ws = Workspace(tmp_path / f"ws-once-{len(list(tmp_path.iterdir()))}")
    ws.create()
    ingest(ws, Config(), [tmp_path / "logs" / name])
    return snapshot(ws)


def line_starts(data: bytes) -> list[int]:
    return [i + 1 for i, byte in enumerate(data[:-1]) if byte == ord("\n")]


def copy_fixture(source: Path, tmp_path: Path, name: str | None = None) -> Path:
    target = tmp_path / "logs" / (name or source.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (CLAUDE, "claude_code"),
        (CLAUDE_AGENT, "claude_code"),
        (CODEX, "codex"),
        (AIDER, "aider"),
        (GEMINI_JSON, "gemini"),
        (GEMINI_JSONL, "gemini"),
        (GEMINI_SUB, "gemini"),
        (CHATGPT, "chatgpt"),
        (GENERIC / "openai_chat.jsonl", "openai"),
        (GENERIC / "sharegpt.json", "sharegpt"),
        (GENERIC / "alpaca.jsonl", "alpaca"),
        (GENERIC / "completions.jsonl", "completions"),
        (FIXTURES / "chatgpt" / "message_feedback.json", None),
    ],
)
def test_formats_are_detected_by_content(path, expected, tmp_path):
    # renamed to a neutral name: detection must not depend on the file name
    neutral = tmp_path / "x.log"
    shutil.copyfile(path, neutral)
    assert detect_format(neutral) == expected


def test_every_registered_format_loads():
    assert format_names() == sorted(REGISTRY)
    for name in format_names():
        assert get_reader(name).name == name


def test_unknown_format_name_suggests_the_closest():
    with pytest.raises(UsageError) as error:
        get_reader("sharegtp")
    assert error.value.hint == "did you mean 'sharegpt'?"


def test_detection_of_a_jsonl_whose_first_line_exceeds_the_head(tmp_path):
    long_line = CLAUDE.read_text().splitlines()[1].replace("fix it", "fix it " + "x" * 70_000)
    path = tmp_path / "s.jsonl"
    path.write_text(long_line + "\n")
    assert detect_format(path) == "claude_code"
