"""OpenAI Codex CLI rollouts: ``$CODEX_HOME/sessions/YYYY/MM/DD/rollout-<ts>-<uuid>.jsonl``.

Lines ``{timestamp, type, payload}`` (FORMATS.md). ``response_item`` payloads carry
the conversation: ``message`` (user / assistant / developer), ``reasoning``,
``function_call`` / ``custom_tool_call`` / ``local_shell_call`` and their
``*_output``. Consecutive assistant items (reasoning, text, calls) form one
assistant message; outputs become ``tool`` messages paired by ``call_id``.
The injected first user messages (AGENTS.md, ``<environment_context>``) are kept
with ``typed=False``; ``event_msg`` mirrors of the same texts are not read twice.

Signals on the assistant message that made the call: the exit code (older
``{"output", "metadata": {"exit_code"}}`` JSON, newer ``Exit code: N`` text) gives
``tool_error`` / ``tool_success``, in every shape Codex writes it (``exit_code`` in
JSON metadata, "Exit code: N", "Process exited with code N", a ``success: false``
output), and so does "failed in sandbox"; "rejected by user" a ``rejection``;
"aborted by user" and ``event_msg turn_aborted`` an ``interrupt``; apply_patch
"Success." a ``tool_success``. Incremental passes restart at the last typed prompt.

The legacy rollout format (codex-cli 0.1.x, spring 2025) is read too: a first line
``{id, timestamp, instructions, git?}``, then the items themselves without the
``{timestamp, type, payload}`` wrapper, ``{"record_type": "state"}`` lines between
them; some of those files have CRLF line ends.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from mlx_rsi.records import Message, Session, ToolCall, session_id
from mlx_rsi.signals import add_signal, previous_answer
from mlx_rsi.sources import ReadOptions, ReadResult
from mlx_rsi.sources.jsonl import LineScanner, as_dict, as_list, head_objects, parse_object
from mlx_rsi.sources.openai import parse_arguments

FORMAT = "codex"
LINE_TYPES = frozenset({"session_meta", "turn_context", "response_item", "event_msg", "compacted"})
INJECTED_PREFIXES = (
    "<user_instructions>",
    "<environment_context>",
    "# AGENTS.md instructions",
    "<user_shell_command>",
    "<turn_aborted>",
)
CALL_TYPES = frozenset({"function_call", "custom_tool_call", "local_shell_call"})
OUTPUT_TYPES = frozenset({"function_call_output", "custom_tool_call_output"})
QUIET_PAYLOADS = frozenset({"ghost_snapshot", "web_search_call", "other"})
_EXIT = re.compile(
    r"(?:^Exit code:?|^Process exited with code|exited with (?:exit )?code)"
    r"\s*(-?\d+)",
    re.MULTILINE | re.IGNORECASE,
)
# The working directory in an injected <environment_context> (older text, newer tag).
_CWD = re.compile(r"(?:Current working directory:|<cwd>)\s*([^\n<]+)")
SANDBOX_FAILURES = ("failed in sandbox", "sandbox error", "execution error:")
HISTORY_NOTE = "Codex prompt history (the prompts are read from the session rollouts)"
ITEM_TYPES = frozenset({"message", "reasoning"}) | CALL_TYPES | OUTPUT_TYPES


@dataclass
class _State:
    session: Session
    open_answer: Message | None = None  # the assistant message items are added to
    calls: dict[str, tuple[Message, str]] = field(default_factory=dict)
    last_prompt: int | None = None  # offset of the last typed prompt


class CodexReader:
    name = FORMAT

    def detect(self, path: Path, head: bytes) -> float:
        records = head_objects(head)[:3]
        for record in records:
            if record.get("type") in LINE_TYPES and isinstance(record.get("payload"), dict):
                return 0.95
        if records and (_is_legacy_meta(records[0]) or _is_history(records[0])):
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
        carry = dict(carry or {})
        skipped: Counter[str] = Counter()
        if start == 0 and _is_history_file(path):
            return ReadResult([], 0, {}, skipped, replace=True, note=HISTORY_NOTE)
        state = _State(_new_session(path, carry))
        scanner = LineScanner(path, start, options.max_line_bytes, skipped)
        for offset, line in scanner:
            record = parse_object(line, skipped)
            if record is None:
                continue
            if not _line(record, offset, state, carry, skipped):
                skipped["unknown_record_type"] += 1
        session = _finish(state.session, path, carry)
        end = state.last_prompt if state.last_prompt is not None else start
        sessions = [session] if session.messages else []
        return ReadResult(sessions, end, carry, skipped)


def _new_session(path: Path, carry: dict[str, Any]) -> Session:
    return Session(
        id="",
        source_format=FORMAT,
        path=str(path),
        started_at=carry.get("started"),
        project=carry.get("cwd"),
    )


def _finish(session: Session, path: Path, carry: dict[str, Any]) -> Session:
    native = carry.get("native") or path.stem
    session.native_id = native
    session.id = session_id(FORMAT, str(path), native)
    session.started_at = session.started_at or carry.get("started")
    session.project = session.project or carry.get("cwd")
    session.metadata = {k: carry[k] for k in ("cli_version", "branch", "model") if carry.get(k)}
    return session


def _is_history(record: dict[str, Any]) -> bool:
    """A line of ``$CODEX_HOME/history.jsonl``: ``{session_id, ts, text}``, a prompt log."""
    return {"session_id", "ts", "text"} <= record.keys() and "type" not in record


def _is_history_file(path: Path) -> bool:
    with path.open("rb") as handle:
        records = head_objects(handle.read(4096))
    return bool(records) and _is_history(records[0])


def _is_legacy_meta(record: dict[str, Any]) -> bool:
    """The first line of a legacy rollout: ``{id, timestamp, instructions, …}``."""
    return (
        "type" not in record
        and isinstance(record.get("id"), str)
        and isinstance(record.get("timestamp"), str)
        and "instructions" in record
    )


def _legacy_line(record: dict[str, Any], offset: int, state: _State, carry: dict[str, Any]) -> bool:
    """A legacy rollout line (no payload wrapper); False when its type is unknown."""
    if _is_legacy_meta(record):
        _meta(record, carry, state.session)
        return True
    if record.get("record_type") == "state":
        return True
    if record.get("type") in ITEM_TYPES:
        return _item(record, offset, None, state)
    return False


def _line(
    record: dict[str, Any], offset: int, state: _State, carry: dict[str, Any], skipped: Counter[str]
) -> bool:
    """Apply one line; False when its type is unknown."""
    kind, payload = record.get("type"), record.get("payload")
    if kind not in LINE_TYPES or not isinstance(payload, dict):
        return _legacy_line(record, offset, state, carry)
    timestamp = record.get("timestamp") if isinstance(record.get("timestamp"), str) else None
    if kind == "session_meta":
        _meta(payload, carry, state.session)
    elif kind == "turn_context":
        if isinstance(payload.get("model"), str):
            carry["model"] = payload["model"]
    elif kind == "event_msg":
        if payload.get("type") == "turn_aborted":
            _interrupt(state, "turn aborted")
    elif kind == "compacted":
        text = str(payload.get("message") or "")
        message = Message("user", text, key=f"o{offset}", timestamp=timestamp, typed=False)
        message.metadata["compacted"] = True
        _append(state, message)
    else:
        return _item(payload, offset, timestamp, state)
    return True


def _meta(payload: dict[str, Any], carry: dict[str, Any], session: Session) -> None:
    for source, target in (("id", "native"), ("timestamp", "started"), ("cwd", "cwd")):
        if isinstance(payload.get(source), str):
            carry[target] = payload[source]
    if isinstance(payload.get("cli_version"), str):
        carry["cli_version"] = payload["cli_version"]
    git = payload.get("git")
    if isinstance(git, dict) and isinstance(git.get("branch"), str):
        carry["branch"] = git["branch"]
    session.started_at = carry.get("started")
    session.project = carry.get("cwd")


def _item(payload: dict[str, Any], offset: int, timestamp: str | None, state: _State) -> bool:
    kind = payload.get("type")
    if kind == "message":
        return _message_item(payload, offset, timestamp, state)
    if kind == "reasoning":
        answer = _answer(state, offset, timestamp)
        summary = [s.get("text") for s in payload.get("summary") or [] if isinstance(s, dict)]
        text = "\n".join(t for t in summary if isinstance(t, str))
        if text:
            answer.reasoning = f"{answer.reasoning}\n{text}" if answer.reasoning else text
        return True
    if kind in CALL_TYPES:
        _call_item(payload, offset, timestamp, state)
        return True
    if kind in OUTPUT_TYPES:
        _output_item(payload, timestamp, state)
        return True
    return kind in QUIET_PAYLOADS


def _message_item(
    payload: dict[str, Any], offset: int, timestamp: str | None, state: _State
) -> bool:
    role = payload.get("role")
    parts = as_list(payload.get("content"))
    text = "\n".join(_part_texts(parts))
    if role == "assistant":
        answer = _answer(state, offset, timestamp)
        answer.text = f"{answer.text}\n\n{text}" if answer.text else text
        return True
    if role not in ("user", "developer", "system"):
        return False
    typed = role == "user" and not text.lstrip().startswith(INJECTED_PREFIXES)
    message = Message(
        "user" if role == "user" else "system",
        text,
        key=f"o{offset}",
        timestamp=timestamp,
        typed=typed,
    )
    _append(state, message)
    if typed:
        state.last_prompt = offset
    elif state.session.project is None and (cwd := _CWD.search(text[:2000])):
        state.session.project = cwd.group(1).strip()  # legacy rollouts name it only here
    return True


def _part_texts(parts: list[Any]) -> list[str]:
    texts = []
    for part in parts:
        if not isinstance(part, dict):
            continue
        if isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif part.get("type") == "input_image":
            texts.append("<IMAGE>")
    return texts


def _append(state: _State, message: Message) -> None:
    state.session.messages.append(message)
    state.open_answer = None


def _answer(state: _State, offset: int, timestamp: str | None) -> Message:
    """The assistant message being built, or a new one starting at this line."""
    if state.open_answer is None:
        state.open_answer = Message("assistant", key=f"o{offset}", timestamp=timestamp)
        state.session.messages.append(state.open_answer)
    return state.open_answer


def _call_item(payload: dict[str, Any], offset: int, timestamp: str | None, state: _State) -> None:
    answer = _answer(state, offset, timestamp)
    call_id = str(payload.get("call_id") or payload.get("id") or f"o{offset}")
    if payload.get("type") == "local_shell_call":
        name, arguments = "local_shell", payload.get("action")
    elif payload.get("type") == "custom_tool_call":
        name, arguments = str(payload.get("name") or ""), payload.get("input")
    else:
        name, arguments = str(payload.get("name") or ""), parse_arguments(payload.get("arguments"))
    answer.tool_calls.append(ToolCall(call_id, name, arguments))
    state.calls[call_id] = (answer, name)


def _output_item(payload: dict[str, Any], timestamp: str | None, state: _State) -> None:
    call_id = str(payload.get("call_id") or "")
    caller, name = state.calls.get(call_id, (None, None))
    text, exit_code = _output(payload.get("output"))
    message = Message(
        "tool",
        text,
        key=f"r:{call_id}",
        tool_call_id=call_id,
        name=name,
        timestamp=timestamp,
        is_error=exit_code not in (None, 0),
    )
    _append(state, message)
    if caller is not None:
        _output_signal(caller, message, name or "", exit_code)


def _output(raw: Any) -> tuple[str, int | None]:
    """The output text and exit code of a tool call (every Codex style)."""
    if isinstance(raw, dict):
        failed = raw.get("success") is False
        raw = (
            raw.get("content")
            if isinstance(raw.get("content"), str)
            else orjson.dumps(raw).decode()
        )
        if failed:
            text, code = _output(raw)
            return text, code if code not in (None, 0) else 1
    text = raw if isinstance(raw, str) else ""
    if text.startswith("{"):
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("output"), str):
            metadata = as_dict(data.get("metadata"))
            code = metadata.get("exit_code")
            return data["output"], code if isinstance(code, int) else None
    match = _EXIT.search(text[:500])
    return text, int(match.group(1)) if match else None


def _output_signal(caller: Message, message: Message, name: str, exit_code: int | None) -> None:
    text = message.text.strip()
    lowered = text[:300].lower()
    if "rejected by user" in lowered:
        message.is_error = True
        add_signal(caller, "rejection", True, "")
    elif "aborted by user" in lowered:
        message.is_error = True
        add_signal(caller, "interrupt", True, text.splitlines()[0][:200])
    elif exit_code not in (None, 0):
        add_signal(caller, "tool_error", True, f"{name}: exit code {exit_code}")
    elif any(failure in lowered for failure in SANDBOX_FAILURES):
        message.is_error = True
        first = text.splitlines()[0] if text else ""
        add_signal(caller, "tool_error", True, f"{name}: {first}"[:200])
    elif exit_code == 0 or text.startswith("Success."):
        add_signal(caller, "tool_success", True, name)


def _interrupt(state: _State, detail: str) -> None:
    messages = state.session.messages
    answer = previous_answer(messages, len(messages))
    if answer is not None and not any(s.kind == "interrupt" for s in answer.signals):
        add_signal(answer, "interrupt", True, detail)
    state.open_answer = None


READER = CodexReader()
