"""Aider's ``.aider.chat.history.md`` (Markdown, appended).

``# aider chat started at YYYY-MM-DD HH:MM:SS`` starts a session; ``#### `` lines
are the person's message; ``> `` lines are aider's own output (confirmations,
"Applied edit", commits, errors) and become ``tool`` messages; other lines are
the assistant's reply. Turns are split by these markers (there are no ids; keys
are byte offsets, stable because the file is only appended to).

Signals on the assistant reply before them: "n" to a question about the model's
own proposal (run its shell command, allow its edit of a file outside the chat) is
a ``rejection`` (detail: the question); "n" to aider's housekeeping questions
("Create new file?", "Add file to the chat?", "Open URL for more info?", "Install
playwright?") is not. ``#### /undo`` is a ``correction``; ``^C again to exit`` /
``^C KeyboardInterrupt`` an ``interrupt``; aider error lines ("Failed to apply
edit", "The LLM did not conform …") a ``tool_error``; ``litellm.*`` errors are the
model API failing, an ``api_error`` (on the answer they cut short, or on an
assistant message of their own when no answer came). Chat-mode commands with a
request (``/code …``, ``/ask …``, ``/architect …``, ``/context …``) are prompts the
person typed (text: the request); other ``/commands`` are kept with ``typed=False``.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlx_rsi.records import Message, Role, Session, session_id
from mlx_rsi.signals import add_signal, previous_answer
from mlx_rsi.sources import ReadOptions, ReadResult
from mlx_rsi.sources.jsonl import UTF8_BOM, LineScanner

FORMAT = "aider"
HEADER = "# aider chat started at "
USER = "#### "
_ANSWER_NO = re.compile(r"^(?P<question>.*\?.*\[(?:y|n|yes|no)\]):\s*(?:n|no)\s*$", re.IGNORECASE)
ERROR_PREFIXES = (
    "error",
    "failed to apply edit",
    "the llm did not conform to the edit format",
    "unable to",
    "searchreplacenoexactmatch",
    "traceback (most recent call last)",
)
API_ERROR_PREFIXES = ("litellm.", "openai.", "anthropic.")
RETRYING = "retrying in "
INTERRUPTS = ("^c again to exit", "^c keyboardinterrupt")
# Questions whose "n" refuses what the model proposed (others are aider's housekeeping).
REJECTING_QUESTIONS = (
    "run shell command",
    "allow edits to",
    "apply edit",
    "apply the edit",
)
# Chat-mode commands followed by a request the person typed.
PROMPT_COMMANDS = frozenset({"/ask", "/code", "/architect", "/context"})


@dataclass
class _Block:
    role: Role
    offset: int
    lines: list[str] = field(default_factory=list)


@dataclass
class _State:
    path: Path
    carry: dict[str, Any]
    sessions: list[Session] = field(default_factory=list)
    block: _Block | None = None
    last_prompt: int | None = None
    prompt_carry: dict[str, Any] = field(default_factory=dict)  # the session at last_prompt
    fenced: bool = False  # inside a ``` block of the assistant's reply


class AiderReader:
    name = FORMAT

    def detect(self, path: Path, head: bytes) -> float:
        text = head.lstrip(UTF8_BOM + b" \t\r\n")
        if text.startswith(HEADER.encode()):
            return 0.95
        if path.name == ".aider.chat.history.md" and text.startswith((b"#", b">")):
            return 0.9
        return 0.0

    def read(
        self,
        path: Path,
        start: int = 0,
        carry: dict[str, Any] | None = None,
        options: ReadOptions | None = None,
    ) -> ReadResult:
        options = options or ReadOptions()
        skipped: Counter[str] = Counter()
        state = _State(path, dict(carry or {}))
        # a last line without its newline may still be being written: never taken
        scanner = LineScanner(path, start, options.max_line_bytes, skipped, lambda _: False)
        for offset, raw in scanner:
            _line(state, offset, _decode(raw, skipped))
        _close_block(state)
        sessions = [s for s in state.sessions if s.messages]
        if state.last_prompt is not None:  # re-read from the last prompt, in its session
            return ReadResult(sessions, state.last_prompt, state.prompt_carry, skipped)
        if not sessions:  # nothing but headers: no turn to re-read
            return ReadResult(sessions, scanner.end, state.carry, skipped)
        return ReadResult(sessions, start, dict(carry or {}), skipped)


def _decode(raw: bytes, skipped: Counter[str]) -> str:
    try:
        return raw.decode("utf-8").rstrip("\r")
    except UnicodeDecodeError:
        skipped["bad_encoding"] += 1
        return raw.decode("utf-8", errors="replace").rstrip("\r")


def _line(state: _State, offset: int, line: str) -> None:
    if line.startswith(HEADER):
        _close_block(state)
        stamp = line[len(HEADER) :].strip()
        state.carry = {"native": f"{stamp}@{offset}", "started": stamp}
        return
    role: Role = "assistant"
    text = line
    if state.fenced or line.startswith("```"):
        if state.block is not None and state.block.role != "assistant":
            _close_block(state)
        _reply_line(state, offset, line)
        return
    if line.startswith(USER) or line == "####":
        role, text = "user", line[len(USER) :]
    elif line.startswith(">"):
        role, text = "tool", line[2:] if line.startswith("> ") else line[1:]
    block = state.block
    if block is None or block.role != role:
        if role == "assistant" and not line.strip():
            return  # blank lines between blocks
        _close_block(state)
        block = state.block = _Block(role, offset)
    block.lines.append(text.rstrip())


def _reply_line(state: _State, offset: int, line: str) -> None:
    """A line of the assistant's reply inside (or opening/closing) a code fence."""
    if line.startswith("```"):
        state.fenced = not state.fenced
    if state.block is None:
        state.block = _Block("assistant", offset)
    state.block.lines.append(line.rstrip())


def _close_block(state: _State) -> None:
    block, state.block = state.block, None
    if block is None:
        return
    text = "\n".join(block.lines).strip()
    if not text:
        return
    session = _session(state)
    message = Message(
        block.role, text, key=f"o{block.offset}", timestamp=state.carry.get("started")
    )
    if block.role == "tool":
        message.name = "aider"
    messages = session.messages
    messages.append(message)
    if block.role == "user":
        _user_signals(message, messages, state, block.offset)
    elif block.role == "tool":
        _tool_signals(message, messages)


def _session(state: _State) -> Session:
    native = state.carry.setdefault("native", f"{state.path.name}@0")
    if not state.sessions or state.sessions[-1].native_id != native:
        state.sessions.append(
            Session(
                id=session_id(FORMAT, str(state.path), native),
                source_format=FORMAT,
                path=str(state.path),
                native_id=native,
                started_at=_iso(state.carry.get("started")),
                project=str(state.path.parent),
            )
        )
    return state.sessions[-1]


def _iso(stamp: str | None) -> str | None:
    return stamp.replace(" ", "T", 1) if stamp else None


def _user_signals(message: Message, messages: list[Message], state: _State, offset: int) -> None:
    text = message.text
    command = text.split()[0] if text.startswith("/") else ""
    request = text[len(command) :].strip()
    if command in PROMPT_COMMANDS and request:
        message.text = request
    elif command:
        message.typed = False
    if command:
        message.metadata["command"] = command
    if message.typed:
        state.last_prompt = offset
        state.prompt_carry = dict(state.carry)
        return
    if command == "/undo":
        answer = previous_answer(messages, len(messages) - 1)
        if answer is not None:
            add_signal(answer, "correction", True, "/undo")


def _tool_signals(message: Message, messages: list[Message]) -> None:
    answer = previous_answer(messages, len(messages) - 1)
    retried = RETRYING in message.text.lower()  # aider retried: the error was passing
    for line in message.text.splitlines():
        stripped = line.strip()
        lowered = stripped.lower()
        if lowered.startswith(API_ERROR_PREFIXES):
            if retried:
                continue
            answer = answer or _error_answer(message, messages)
            add_signal(answer, "api_error", True, stripped[:200])
        elif answer is None:
            continue
        elif lowered.startswith(INTERRUPTS):
            add_signal(answer, "interrupt", True, stripped[:200])
        elif refused := _ANSWER_NO.match(stripped):
            question = refused.group("question")
            if question.lower().startswith(REJECTING_QUESTIONS):
                add_signal(answer, "rejection", True, question[:200])
        elif lowered.startswith(ERROR_PREFIXES):
            message.is_error = True
            add_signal(answer, "tool_error", True, stripped[:200])


def _error_answer(message: Message, messages: list[Message]) -> Message:
    """An assistant message standing for the answer an API error prevented."""
    answer = Message("assistant", "", key=f"{message.key}:api", timestamp=message.timestamp)
    messages.insert(len(messages) - 1, answer)
    return answer


READER = AiderReader()
